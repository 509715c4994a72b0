// The video client against a scripted server (the HTTP boundary): sessions recreated and their
// prompts replayed when the server lost them, NDJSON read as it comes (lines split across
// chunks), and the stream cancelled when the loop stops early.
import { describe, expect, it } from "vitest";
import { Sam2Client, SessionNotFoundError, VideoSession, encodeRle } from "../src/index.js";

const VIDEO = { video_id: "vid_" + "1".repeat(32), num_frames: 3, width: 2, height: 2, fps: null };
const session = (n: string) => ({
  session_id: "ses_" + "1".repeat(32) + n.repeat(32),
  video_id: VIDEO.video_id,
  num_frames: 3,
  object_ids: [],
  prompted_frames: [],
  propagating: false,
  expires_at: "2026-11-28T03:00:00Z",
});
const MASK = encodeRle(new Uint8Array([0, 0, 0, 1]), 2, 2); // the bottom-right pixel
const frame = (index: number) => ({ frame_index: index, objects: [{ object_id: 1, mask: MASK, area: 1, bbox: [1, 1, 1, 1], visible: true }] });
const LOST = () => new Response(JSON.stringify({ code: "session_not_found", detail: "gone", hint: "h" }), { status: 404, headers: { "content-type": "application/problem+json" } });

type Call = { method: string; path: string; body: unknown };

function server(script: Array<(call: Call) => Response>): { client: Sam2Client; calls: Call[] } {
  const calls: Call[] = [];
  const fetchImpl = (async (url: string, init: RequestInit) => {
    const body = typeof init.body === "string" ? JSON.parse(init.body) : init.body;
    const call = { method: init.method ?? "GET", path: new URL(url).pathname, body };
    calls.push(call);
    const next = script.shift();
    if (!next) throw new Error(`unexpected call ${call.method} ${call.path}`);
    return next(call);
  }) as typeof fetch;
  return { client: new Sam2Client({ apiKey: "k", fetch: fetchImpl, sleep: async () => undefined }), calls };
}

describe("video sessions", () => {
  it("recreate a lost session, replay its prompts in order, then retry the call", async () => {
    const { client, calls } = server([
      () => Response.json(VIDEO),
      () => Response.json(session("a")),
      () => Response.json(frame(0)),
      LOST,
      () => Response.json(session("b")),
      () => Response.json(frame(0)), // the replayed prompt
      () => Response.json(frame(2)), // the retried call
    ]);
    const video = await client.videos.upload({ frames: [new Uint8Array([1]), new Uint8Array([2])], fps: 5 });
    const form = calls[0]!.body as FormData;
    expect(form.getAll("frames")).toHaveLength(2);
    expect(form.get("fps")).toBe("5");
    let told = 0;
    const tracker = await client.videos.session(video, { onRecreated: () => (told += 1) });
    const first = await tracker.addPoints(0, 1, [[1, 1]]);
    expect(Array.from(first.objects[0]!.mask)).toEqual([0, 0, 0, 1]);
    const answer = await tracker.addMask(2, 1, new Uint8Array([0, 0, 0, 1]));
    expect(answer.frameIndex).toBe(2);
    expect(told).toBe(1);
    expect(tracker.recreated).toBe(1);
    expect(tracker.sessionId.endsWith("b".repeat(32))).toBe(true);
    expect(calls.map((c) => `${c.method} ${c.path.replace(/ses_\w+/, "S")}`)).toEqual([
      "POST /v1/videos",
      `POST /v1/videos/${VIDEO.video_id}/sessions`,
      "POST /v1/sessions/S/prompts",
      "POST /v1/sessions/S/prompts",
      `POST /v1/videos/${VIDEO.video_id}/sessions`,
      "POST /v1/sessions/S/prompts",
      "POST /v1/sessions/S/prompts",
    ]);
    expect(calls[5]!.body).toEqual(calls[2]!.body); // the same prompt, sent again
    expect(calls[6]!.body).toMatchObject({ frame_index: 2, mask: encodeRle(new Uint8Array([0, 0, 0, 1]), 2, 2) });
  });

  it("streams propagation line by line across chunks, and closing early cancels the stream", async () => {
    const text = [frame(0), frame(1), frame(2), { done: true, frames: 3, object_ids: [1], model_ms: 12 }].map((l) => JSON.stringify(l) + "\n").join("");
    const chunks = [text.slice(0, 7), text.slice(7, 150), text.slice(150)];
    let cancelled = false;
    const body = (ends: boolean) =>
      new ReadableStream<Uint8Array>({
        pull(controller) {
          const next = chunks.shift();
          if (next !== undefined) controller.enqueue(new TextEncoder().encode(next));
          else if (ends) controller.close();
          else return new Promise<void>(() => undefined); // a server still tracking
        },
        cancel() {
          cancelled = true;
        },
      });
    const { client } = server([
      () => Response.json(session("a")),
      () => new Response(body(true), { headers: { "content-type": "application/x-ndjson" } }),
      () => new Response(body(false), { headers: { "content-type": "application/x-ndjson" } }),
    ]);
    const tracker = new VideoSession(client, client.videos, VIDEO, await client.videos.open(VIDEO.video_id));
    const seen: number[] = [];
    for await (const f of tracker.propagate({ direction: "forward" })) seen.push(f.frameIndex);
    expect(seen).toEqual([0, 1, 2]);
    expect(tracker.summary).toEqual({ done: true, frames: 3, object_ids: [1], model_ms: 12 });
    chunks.push(JSON.stringify(frame(0)) + "\n"); // a second stream, left after its first frame
    for await (const f of tracker.propagate()) {
      expect(f.frameIndex).toBe(0);
      break;
    }
    expect(cancelled).toBe(true);
  });

  it("finalOnly skips the frames a later pass of the propagation tracks again", async () => {
    const text = [{ ...frame(0), final: false }, frame(1), frame(0), { done: true, frames: 3, object_ids: [1], model_ms: 3 }]
      .map((l) => JSON.stringify(l))
      .join("\n");
    const stream = () => new Response(text, { headers: { "content-type": "application/x-ndjson" } });
    const { client } = server([() => Response.json(session("a")), stream, stream]);
    const tracker = new VideoSession(client, client.videos, VIDEO, await client.videos.open(VIDEO.video_id));
    const all: Array<[number, boolean]> = [];
    for await (const f of tracker.propagate()) all.push([f.frameIndex, f.final]);
    expect(all).toEqual([[0, false], [1, true], [0, true]]);
    const once: number[] = [];
    for await (const f of tracker.propagate({ finalOnly: true })) once.push(f.frameIndex);
    expect(once).toEqual([1, 0]);
  });

  it("a propagation on a lost session recreates it first; a lost clip is uploaded again", async () => {
    const lines = [frame(0), { done: true, frames: 1, object_ids: [1], model_ms: 1 }].map((l) => JSON.stringify(l)).join("\n");
    const gone = () => new Response(JSON.stringify({ code: "video_not_found", detail: "d" }), { status: 404 });
    const { client, calls } = server([
      () => Response.json(VIDEO), // the upload
      () => Response.json(session("a")),
      LOST, // the stream
      gone, // a new session: the clip is gone too
      () => Response.json(VIDEO), // uploaded again, from what the client kept
      () => Response.json(session("b")),
      () => new Response(lines, { headers: { "content-type": "application/x-ndjson" } }),
    ]);
    const video = await client.videos.upload({ video: new Uint8Array([9, 9]) });
    const tracker = await client.videos.session(video);
    const seen: number[] = [];
    for await (const f of tracker.propagate()) seen.push(f.frameIndex);
    expect(seen).toEqual([0]);
    expect(tracker.recreated).toBe(1);
    expect((calls[4]!.body as FormData).get("video")).toBeInstanceOf(Blob);
    const plain = server([LOST]);
    await expect(plain.client.request("GET", "/v1/sessions/x")).rejects.toBeInstanceOf(SessionNotFoundError);
  });
});
