// @vitest-environment jsdom
import { act } from "react";
import { createRoot } from "react-dom/client";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Sam2Client, encodeRle } from "../src/index.js";
import { MaskOverlay, useSegmenter, useVideoTracker, type SegmenterState, type VideoTrackerState } from "../src/react/index.js";
import { ANSWER } from "./answers.js";

(globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }).IS_REACT_ACT_ENVIRONMENT = true;


let container: HTMLDivElement;
beforeEach(() => {
  container = document.createElement("div");
  document.body.append(container);
});
afterEach(() => container.remove());

describe("useSegmenter", () => {
  it("segments the current image, rejects on error like mutateAsync, and reset clears both", async () => {
    const replies = [() => Response.json(ANSWER), () => new Response(JSON.stringify({ code: "invalid_point_label", detail: "d" }), { status: 422 })];
    const fetchImpl = (async () => replies.shift()!()) as typeof fetch;
    const client = new Sam2Client({ apiKey: "k", fetch: fetchImpl });
    let state: SegmenterState | undefined;
    const image = new Uint8Array([1, 2, 3]); // stable across renders, as a File from an input is
    function Probe() {
      state = useSegmenter(client, image);
      return null;
    }
    const root = createRoot(container);
    await act(async () => root.render(<Probe />));
    expect(state!.result).toBeUndefined();
    await act(async () => {
      await state!.segment({ points: [[1, 1]] });
    });
    expect(state!.loading).toBe(false);
    expect(Array.from((state!.result as { mask: Uint8Array }).mask)).toEqual([0, 1, 0, 1]);
    let rejected: unknown;
    await act(async () => {
      rejected = await state!.segment({ points: [[1, 1]], labels: [7] }).catch((e: unknown) => e);
    });
    // Like react-query's mutateAsync: the promise rejects, and the state holds the error too.
    expect((rejected as Error).name).toBe("UnprocessableEntityError");
    expect(state!.error?.name).toBe("UnprocessableEntityError");
    await act(async () => state!.reset());
    expect(state!.error).toBeUndefined();
    expect(state!.result).toBeUndefined();
    await act(async () => root.unmount());
  });

  it("a new call cancels the one in flight (the connection closes) and cancel() stops one, keeping the last result", async () => {
    const aborted: string[] = [];
    let started = () => {};
    // Automatic mode never answers by itself: it ends only when its connection is closed.
    const fetchImpl = (async (_url: string, init: RequestInit) => {
      const fields = String(init.body instanceof FormData ? init.body.get("request") : init.body);
      if (!fields.includes('"auto"')) return Response.json(ANSWER);
      started();
      return new Promise<Response>((_, reject) =>
        init.signal!.addEventListener("abort", () => {
          aborted.push("auto");
          reject(new DOMException("aborted", "AbortError"));
        }),
      );
    }) as typeof fetch;
    const client = new Sam2Client({ apiKey: "k", fetch: fetchImpl });
    let state: SegmenterState | undefined;
    const image = new Uint8Array([1, 2, 3]);
    function Probe() {
      state = useSegmenter(client, image);
      return null;
    }
    const root = createRoot(container);
    await act(async () => root.render(<Probe />));
    let everything: Promise<unknown> | undefined;
    // Each automatic call is sent (its connection open) before the test goes on.
    const sent = () => new Promise<void>((resolve) => (started = resolve));
    await act(async () => {
      const open = sent();
      everything = state!.segmentAuto({ points_per_side: 4 }).catch((e: unknown) => e);
      await open;
    });
    expect(state!.loading).toBe(true);
    await act(async () => {
      await state!.segment({ points: [[1, 1]] });
    });
    expect(((await everything) as Error).name).toBe("APIUserAbortError");
    expect(aborted).toEqual(["auto"]);
    expect(state!.result && "allMasks" in state!.result).toBe(true); // the click's answer
    expect(state!.error).toBeUndefined();
    await act(async () => {
      const open = sent();
      everything = state!.segmentAuto().catch((e: unknown) => e);
      await open;
    });
    await act(async () => state!.cancel());
    expect(((await everything) as Error).name).toBe("APIUserAbortError");
    expect(aborted).toEqual(["auto", "auto"]);
    expect([state!.loading, state!.error, "allMasks" in state!.result!]).toEqual([false, undefined, true]);
    await act(async () => root.unmount());
  });
});

describe("useVideoTracker", () => {
  it("loads a clip, keeps each frame's masks from prompts and propagation, and counts progress", async () => {
    const video = { video_id: "vid_" + "1".repeat(32), num_frames: 2, width: 2, height: 2, fps: null };
    const info = { session_id: "ses_" + "1".repeat(64), video_id: video.video_id, num_frames: 2, object_ids: [], prompted_frames: [], propagating: false, expires_at: "2026-11-28T03:00:00Z" };
    const mask = encodeRle(new Uint8Array([1, 0, 0, 0]), 2, 2);
    const frame = (index: number) => ({ frame_index: index, objects: [{ object_id: 3, mask, area: 1, bbox: [0, 0, 1, 1], visible: true }] });
    const stream = [frame(0), frame(1), { done: true, frames: 2, object_ids: [3], model_ms: 5 }].map((l) => JSON.stringify(l)).join("\n");
    const replies = [() => Response.json(video), () => Response.json(info), () => Response.json(frame(0)), () => new Response(stream)];
    const client = new Sam2Client({ apiKey: "k", fetch: (async () => replies.shift()!()) as typeof fetch });
    let state: VideoTrackerState | undefined;
    function Probe() {
      state = useVideoTracker(client);
      return null;
    }
    const root = createRoot(container);
    await act(async () => root.render(<Probe />));
    await act(async () => {
      await state!.load({ frames: [new Uint8Array([1]), new Uint8Array([2])] });
    });
    expect(state!.video?.num_frames).toBe(2);
    await act(async () => {
      await state!.addPoints(0, 3, [[0, 0]]);
    });
    expect(Array.from(state!.frames.get(0)!.objects[0]!.mask)).toEqual([1, 0, 0, 0]);
    await act(async () => {
      await state!.propagate({ direction: "forward" });
    });
    expect([...state!.frames.keys()]).toEqual([0, 1]);
    expect(state!.progress).toEqual({ done: 2, total: 2 });
    expect(state!.propagating).toBe(false);
    expect(state!.session?.summary?.frames).toBe(2);
    expect(state!.error).toBeUndefined();
    await act(async () => root.unmount());
  });
});

describe("MaskOverlay", () => {
  it("paints the mask in translucent colour on a canvas the size of the image", async () => {
    // The canvas is the browser boundary jsdom does not implement: record what is drawn.
    const drawn: { data: Uint8ClampedArray; width: number }[] = [];
    vi.stubGlobal("ImageData", class { constructor(public data: Uint8ClampedArray, public width: number, public height: number) {} });
    const getContext = vi.spyOn(HTMLCanvasElement.prototype, "getContext").mockReturnValue({
      clearRect: () => undefined,
      putImageData: (image: { data: Uint8ClampedArray; width: number }) => drawn.push(image),
    } as unknown as CanvasRenderingContext2D);
    const root = createRoot(container);
    await act(async () => root.render(<MaskOverlay mask={new Uint8Array([0, 1, 0, 1])} width={2} height={2} />));
    const canvas = container.querySelector("canvas")!;
    expect([canvas.width, canvas.height]).toEqual([2, 2]);
    expect(canvas.getAttribute("aria-label")).toBe("segmentation mask");
    expect(drawn).toHaveLength(1);
    expect(Array.from(drawn[0]!.data.slice(0, 8))).toEqual([0, 0, 0, 0, 30, 144, 255, 128]);
    // Laid over the whole of its positioned parent (the element that wraps the <img>), not
    // below the image, and transparent to clicks.
    expect(canvas.style.position).toBe("absolute");
    expect([canvas.style.width, canvas.style.height]).toEqual(["100%", "100%"]);
    expect(canvas.style.inset === "0" || canvas.style.inset === "0px").toBe(true);
    expect(canvas.style.pointerEvents).toBe("none");
    await act(async () => root.unmount());
    getContext.mockRestore();
    vi.unstubAllGlobals();
  });
});
