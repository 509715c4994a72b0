import { describe, expect, it } from "vitest";
import {
  APITimeoutError,
  AuthenticationError,
  ImageNotCachedError,
  PermissionDeniedError,
  RateLimitError,
  Sam2Client,
  UnprocessableEntityError,
  type TokenResponse,
} from "../src/index.js";
import { ANSWER } from "./answers.js";

const IMAGE = new Uint8Array([1, 2, 3]);

function problem(status: number, code: string, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify({ status, code, detail: "d", hint: "h" }), {
    status,
    headers: { "content-type": "application/problem+json", ...headers },
  });
}

/** The fields a request carried, as the gateway reads them: JSON, or a multipart body's
 * `request` part with its `image` file part as `image`. */
async function fieldsOf(init: RequestInit | undefined): Promise<Record<string, unknown>> {
  if (!(init?.body instanceof FormData)) return JSON.parse(String(init?.body));
  const image = init.body.get("image");
  expect(image).toBeInstanceOf(Blob);
  return { ...JSON.parse(String(init.body.get("request"))), image: new Uint8Array(await (image as Blob).arrayBuffer()) };
}

function scripted(answers: (() => Response)[], seen: RequestInit[] = []): typeof fetch {
  return (async (_url: unknown, init?: RequestInit) => {
    seen.push(init ?? {});
    const next = answers.shift();
    if (!next) throw new Error("no more answers");
    return next();
  }) as typeof fetch;
}

describe("Sam2Client", () => {
  it("retries 5xx with growing jittered backoff, then succeeds", async () => {
    const sleeps: number[] = [];
    const client = new Sam2Client({
      apiKey: "k",
      fetch: scripted([() => problem(503, "inference_unavailable"), () => problem(502, "x"), () => Response.json(ANSWER)]),
      sleep: async (ms) => void sleeps.push(ms),
    });
    const result = await client.segment(IMAGE, { points: [[1, 1]] });
    expect(Array.from(result.mask)).toEqual([0, 1, 0, 1]); // right column set
    expect(sleeps[0]).toBeGreaterThanOrEqual(375);
    expect(sleeps[0]).toBeLessThanOrEqual(500);
    expect(sleeps[1]).toBeGreaterThanOrEqual(750);
  });

  it("honours Retry-After and gives up with a RateLimitError", async () => {
    const sleeps: number[] = [];
    const client = new Sam2Client({
      apiKey: "k",
      fetch: scripted([0, 1, 2].map(() => () => problem(429, "rate_limited", { "retry-after": "3" }))),
      sleep: async (ms) => void sleeps.push(ms),
    });
    const error = await client.segment(IMAGE, { points: [[1, 1]] }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RateLimitError);
    expect((error as RateLimitError).code).toBe("rate_limited");
    expect(sleeps).toEqual([3000, 3000]);
  });

  it.each([
    [401, "invalid_api_key", AuthenticationError],
    [403, "insufficient_scope", PermissionDeniedError],
    [422, "invalid_point_label", UnprocessableEntityError],
  ])("maps %i to a typed error without retrying", async (status, code, ErrorClass) => {
    const seen: RequestInit[] = [];
    const client = new Sam2Client({ apiKey: "k", fetch: scripted([() => problem(status, code)], seen) });
    const error = await client.segment(IMAGE, { points: [[1, 1]] }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ErrorClass);
    expect((error as AuthenticationError).hint).toBe("h");
    expect(seen).toHaveLength(1);
  });

  it("reuses image_id and resends the image when it was evicted", async () => {
    const seen: RequestInit[] = [];
    const client = new Sam2Client({
      apiKey: "k",
      fetch: scripted(
        [() => Response.json(ANSWER), () => Response.json(ANSWER), () => problem(404, "image_not_cached"), () => Response.json(ANSWER)],
        seen,
      ),
    });
    for (let i = 0; i < 3; i += 1) await client.segment(IMAGE, { points: [[1, 1]] });
    const sent = await Promise.all(seen.map(async (init) => ("image" in (await fieldsOf(init)) ? "image" : "image_id")));
    expect(sent).toEqual(["image", "image_id", "image_id", "image"]);
    const upload = await fieldsOf(seen[0]);
    expect(Array.from(upload.image as Uint8Array)).toEqual(Array.from(IMAGE)); // the file as it is
    expect(upload.point_coords).toEqual([[1, 1]]);
    expect(new ImageNotCachedError(404, { code: "image_not_cached" }).name).toBe("ImageNotCachedError");
  });

  it("refreshes a browser token before it expires", async () => {
    let now = 1000;
    const issued: TokenResponse[] = [];
    const getToken = async (): Promise<TokenResponse> => {
      const token = { token: `t${issued.length}`, token_type: "Bearer", expires_in: 60, expires_at: now + 60, scope: "segment" } as TokenResponse;
      issued.push(token);
      return token;
    };
    const seen: RequestInit[] = [];
    const realNow = Date.now;
    Date.now = () => now * 1000;
    try {
      const client = new Sam2Client({ getToken, fetch: scripted([0, 1, 2].map(() => () => Response.json(ANSWER)), seen) });
      await client.segment(IMAGE, { points: [[1, 1]] });
      now += 20; // still 40 s left: reuse
      await client.segment(IMAGE, { points: [[1, 1]] });
      now += 15; // 25 s left, under the 30 s margin: refresh
      await client.segment(IMAGE, { points: [[1, 1]] });
    } finally {
      Date.now = realNow;
    }
    const auth = seen.map((init) => (init.headers as Record<string, string>).authorization);
    expect(auth).toEqual(["Bearer t0", "Bearer t0", "Bearer t1"]);
  });

  it("uploads a new image once however many calls on it run at once", async () => {
    const kinds: string[] = [];
    const fetchImpl = (async (_url: unknown, init?: RequestInit) => {
      const body = await fieldsOf(init);
      kinds.push("image" in body ? "image" : "image_id");
      if ("image" in body) await new Promise((resolve) => setTimeout(resolve, 30)); // the encoder
      return Response.json(ANSWER);
    }) as typeof fetch;
    const client = new Sam2Client({ apiKey: "k", fetch: fetchImpl });
    const answers = await Promise.all([1, 2, 3, 4].map((x) => client.segment(IMAGE, { points: [[x, 1]] })));
    expect(kinds.filter((k) => k === "image")).toHaveLength(1);
    expect(kinds).toHaveLength(4);
    expect(new Set(answers.map((a) => a.imageId)).size).toBe(1);
  });

  it("stops at an AbortSignal: no retry, APIUserAbortError, the connection given up", async () => {
    const calls: (AbortSignal | null | undefined)[] = [];
    const fetchImpl = ((_url: unknown, init?: RequestInit) => {
      calls.push(init?.signal);
      return new Promise<Response>((_resolve, reject) => {
        init?.signal?.addEventListener("abort", () => reject(new DOMException("aborted", "AbortError")));
      });
    }) as typeof fetch;
    const client = new Sam2Client({ apiKey: "k", fetch: fetchImpl, sleep: async () => undefined });
    const controller = new AbortController();
    const pending = client.segmentAuto(IMAGE, { points_per_side: 8 }, { signal: controller.signal });
    await new Promise((resolve) => setTimeout(resolve, 10));
    controller.abort();
    const error = await pending.catch((e: unknown) => e);
    expect((error as Error).name).toBe("APIUserAbortError");
    expect(calls).toHaveLength(1); // not retried
    expect(calls[0]?.aborted).toBe(true); // fetch saw the abort: the connection closes
  });

  it("takes the key and base URL from the environment in Node", async () => {
    const seen: string[] = [];
    const saved = { key: process.env.SAM2_API_KEY, url: process.env.SAM2_BASE_URL };
    process.env.SAM2_API_KEY = "sam2_from_env";
    process.env.SAM2_BASE_URL = "http://elsewhere:9000/";
    try {
      const fetchImpl = (async (url: unknown, init?: RequestInit) => {
        seen.push(`${String(url)} ${(init?.headers as Record<string, string>).authorization}`);
        return Response.json({ models: [], serving: null });
      }) as typeof fetch;
      await new Sam2Client({ fetch: fetchImpl }).models();
    } finally {
      for (const [name, value] of [["SAM2_API_KEY", saved.key], ["SAM2_BASE_URL", saved.url]] as const) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
    }
    expect(seen).toEqual(["http://elsewhere:9000/v1/models Bearer sam2_from_env"]);
  });

  it("asks for the key's usage over the days given, with the key", async () => {
    const seen: string[] = [];
    const report = { key_id: "k", rate_tier: "standard", days: [], since: "2026-11-22" };
    const fetchImpl = (async (url: unknown, init?: RequestInit) => {
      seen.push(`${init?.method} ${String(url)} ${(init?.headers as Record<string, string>).authorization}`);
      return Response.json(report);
    }) as typeof fetch;
    const client = new Sam2Client({ apiKey: "sam2_k", baseUrl: "http://gw", fetch: fetchImpl });
    expect(await client.usage({ days: 7 })).toEqual(report);
    await client.usage();
    expect(seen).toEqual(["GET http://gw/v1/usage?days=7 Bearer sam2_k", "GET http://gw/v1/usage?days=30 Bearer sam2_k"]);
  });

  it("sends a batch with one upload and returns each item's result or error", async () => {
    const bodies: Record<string, unknown>[] = [];
    const batch = {
      count: 2,
      results: [
        { index: 0, status: 200, result: ANSWER },
        { index: 1, status: 422, error: { code: "missing_points", detail: "no points", hint: "add points", status: 422 } },
      ],
    };
    const fetchImpl = (async (_url: unknown, init?: RequestInit) => {
      bodies.push(await fieldsOf(init));
      return Response.json(batch);
    }) as typeof fetch;
    const client = new Sam2Client({ apiKey: "k", fetch: fetchImpl });
    const [first, second] = await client.segmentBatch(IMAGE, [{ point_coords: [[1, 1]] }, { mode: "point" }]);
    expect(first && "mask" in first && Array.from(first.mask)).toEqual([0, 1, 0, 1]);
    expect(second).toEqual({ status: 422, code: "missing_points", detail: "no points", hint: "add points" });
    await client.segmentBatch(IMAGE, [{ point_coords: [[2, 2]] }]);
    expect(bodies.map((b) => ("image" in b ? "image" : "image_id"))).toEqual(["image", "image_id"]);
  });

  it("gives request, stream and download one retry, timeout and error path", async () => {
    const sleeps: number[] = [];
    const lines = () => new Response('{"frame_index":0}\n{"done":true}\n');
    const client = (answers: (() => Response)[], timeoutMs = 300_000) =>
      new Sam2Client({ apiKey: "k", fetch: scripted(answers), timeoutMs, sleep: async (ms) => void sleeps.push(ms) });
    const unavailable = () => problem(503, "inference_unavailable", { "retry-after": "0" });
    expect(await client([unavailable, () => Response.json({ ok: 1 })]).request("GET", "/v1/models")).toEqual({ ok: 1 });
    const streamed = await client([unavailable, lines]).stream("/p", {});
    expect(await streamed.text()).toContain('"done":true');
    const file = await client([unavailable, () => new Response(new Uint8Array([137, 80]))]).download("/f");
    expect(new Uint8Array(await file.arrayBuffer())).toEqual(new Uint8Array([137, 80]));
    expect(sleeps).toEqual([0, 0, 0]);
    await expect(client([() => problem(404, "video_not_found")]).download("/f")).rejects.toMatchObject({ status: 404, code: "video_not_found" });
    const never = (async (_url: unknown, init?: RequestInit) =>
      new Promise<Response>((_resolve, reject) => init?.signal?.addEventListener("abort", () => reject(init.signal?.reason)))) as typeof fetch;
    const slow = new Sam2Client({ apiKey: "k", fetch: never, timeoutMs: 20, maxRetries: 0 });
    await expect(slow.download("/f")).rejects.toBeInstanceOf(APITimeoutError);
    await expect(slow.stream("/p", {})).rejects.toBeInstanceOf(APITimeoutError);
  });
});
