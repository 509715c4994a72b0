// Sam2Client: a small fetch-based client with the Python SDK's retry rules and error names.
// After the first call on an image it sends only the image's `image_id`, and sends the image
// again by itself when the service answers `image_not_cached`.

import { APIConnectionError, APITimeoutError, ImageNotCachedError, Sam2Error, errorFor } from "./core/errors.js";
import type { components } from "./internal/openapi.js";
import { decodeRle, type RleMask } from "./internal/rle.js";

export type SegmentRequest = components["schemas"]["SegmentRequest"];
export type TokenResponse = components["schemas"]["TokenResponse"];
export type ImageInput = Blob | ArrayBuffer | Uint8Array;

export const RETRY_STATUSES = new Set([408, 409, 429, 500, 502, 503, 504]);
const INITIAL_RETRY_DELAY_MS = 500;
const MAX_RETRY_DELAY_MS = 8000;
const TOKEN_REFRESH_MARGIN_S = 30;

export interface Segmentation {
  mask: Uint8Array;
  width: number;
  height: number;
  score: number;
  allScores: number[];
  imageId: string;
  cached: boolean;
  timingsMs: Record<string, number>;
  masks: Uint8Array[];
  /** Every candidate mask, in `allScores` order, when asked for with `returnAllMasks`. */
  allMasks: Uint8Array[];
  /** What the server warns about, e.g. that it runs random weights. */
  warnings: string[];
}

export interface AutoSegmentation {
  masks: { mask: Uint8Array; area: number; bbox: number[]; predictedIou: number; stabilityScore: number }[];
  width: number;
  height: number;
  imageId: string;
  cached: boolean;
  timingsMs: Record<string, number>;
  warnings: string[];
}

export interface ClientOptions {
  /** An API key (servers only), or... */
  apiKey?: string;
  /** ...a function that returns a fresh token (browsers); refreshed before it expires. */
  getToken?: () => Promise<TokenResponse>;
  baseUrl?: string;
  fetch?: typeof fetch;
  maxRetries?: number;
  /** Per attempt; a cold GPU container can take a minute. */
  timeoutMs?: number;
  sleep?: (ms: number) => Promise<void>;
}

export interface PromptOptions {
  points?: number[][];
  labels?: number[];
  box?: number[];
  boxes?: number[][];
  multimask?: boolean;
  returnAllMasks?: boolean;
}

export class Sam2Client {
  readonly baseUrl: string;
  private readonly fetchImpl: typeof fetch;
  private readonly maxRetries: number;
  private readonly timeoutMs: number;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly imageIds = new Map<string, string>();
  private token: TokenResponse | undefined;

  constructor(private readonly options: ClientOptions) {
    if (!options.apiKey && !options.getToken) throw new Sam2Error("pass apiKey (servers) or getToken (browsers)");
    this.baseUrl = (options.baseUrl ?? "http://127.0.0.1:8080").replace(/\/+$/, "");
    this.fetchImpl = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.maxRetries = options.maxRetries ?? 2;
    this.timeoutMs = options.timeoutMs ?? 300_000;
    this.sleep = options.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
  }

  /** Points and/or a box (or several boxes, one mask each). */
  async segment(image: ImageInput, prompt: PromptOptions): Promise<Segmentation> {
    const fields: Partial<SegmentRequest> = {
      mode: prompt.box || prompt.boxes ? "box" : "point",
      mask_format: "rle",
      multimask_output: prompt.multimask ?? true,
      return_all_masks: prompt.returnAllMasks ?? false,
    };
    if (prompt.points) fields.point_coords = prompt.points;
    if (prompt.labels) fields.point_labels = prompt.labels;
    const box = prompt.boxes ?? prompt.box;
    if (box) fields.box_coords = box;
    const answer = await this.onImage(image, fields);
    const [height = 0, width = 0] = answer.image_shape as number[];
    return {
      mask: decodeRle(answer.mask as RleMask),
      width,
      height,
      score: answer.score as number,
      allScores: answer.all_scores as number[],
      imageId: answer.image_id as string,
      cached: answer.cached as boolean,
      timingsMs: answer.timings_ms as Record<string, number>,
      masks: ((answer.predictions ?? []) as { mask: RleMask }[]).map((p) => decodeRle(p.mask)),
      allMasks: ((answer.all_masks ?? []) as RleMask[]).map((m) => decodeRle(m)),
      warnings: (answer.warnings ?? []) as string[],
    };
  }

  /** Everything in the image; `knobs` are the auto-mode fields (points_per_side, ...). */
  async segmentAuto(image: ImageInput, knobs: Partial<SegmentRequest> = {}): Promise<AutoSegmentation> {
    const answer = await this.onImage(image, { ...knobs, mode: "auto", mask_format: "rle" });
    const [height = 0, width = 0] = answer.image_shape as number[];
    const masks = (answer.masks as Record<string, unknown>[]).map((m) => ({
      mask: decodeRle(m.segmentation as RleMask),
      area: m.area as number,
      bbox: m.bbox as number[],
      predictedIou: m.predicted_iou as number,
      stabilityScore: m.stability_score as number,
    }));
    return {
      masks,
      width,
      height,
      imageId: answer.image_id as string,
      cached: answer.cached as boolean,
      timingsMs: answer.timings_ms as Record<string, number>,
      warnings: (answer.warnings ?? []) as string[],
    };
  }

  private async onImage(image: ImageInput, fields: Partial<SegmentRequest>): Promise<Record<string, unknown>> {
    const bytes = await toBytes(image);
    const fingerprint = await sha256(bytes);
    const known = this.imageIds.get(fingerprint);
    if (known !== undefined) {
      try {
        return await this.request("POST", "/v1/segment", { ...fields, image_id: known });
      } catch (error) {
        if (!(error instanceof ImageNotCachedError)) throw error;
        this.imageIds.delete(fingerprint);
      }
    }
    const answer = await this.request("POST", "/v1/segment", { ...fields, image: toBase64(bytes) });
    this.imageIds.set(fingerprint, answer.image_id as string);
    return answer;
  }

  async request(method: string, path: string, body?: unknown): Promise<Record<string, unknown>> {
    for (let attempt = 0; ; attempt += 1) {
      const last = attempt >= this.maxRetries;
      let response: Response;
      try {
        const init: RequestInit = {
          method,
          headers: { "content-type": "application/json", authorization: `Bearer ${await this.credential()}` },
          signal: AbortSignal.timeout(this.timeoutMs),
        };
        if (body !== undefined) init.body = JSON.stringify(body);
        response = await this.fetchImpl(this.baseUrl + path, init);
      } catch (error) {
        const timedOut = error instanceof Error && (error.name === "TimeoutError" || error.name === "AbortError");
        if (!last) {
          await this.sleep(retryDelay(attempt, null));
          continue;
        }
        throw timedOut ? new APITimeoutError("the service did not answer in time") : new APIConnectionError(`cannot reach ${this.baseUrl}: ${String(error)}`);
      }
      if (response.ok) return (await response.json()) as Record<string, unknown>;
      if (RETRY_STATUSES.has(response.status) && !last) {
        await this.sleep(retryDelay(attempt, response.headers.get("retry-after")));
        continue;
      }
      const problem = await response.json().catch(() => ({}));
      throw errorFor(response.status, problem, response.headers.get("x-request-id") ?? undefined);
    }
  }

  private async credential(): Promise<string> {
    if (this.options.apiKey) return this.options.apiKey;
    const now = Date.now() / 1000;
    if (!this.token || this.token.expires_at - TOKEN_REFRESH_MARGIN_S <= now) {
      this.token = await this.options.getToken!();
    }
    return this.token.token;
  }
}

/** Server side: trade an API key for a short-lived browser token (never ship the key). */
export async function createToken(
  apiKey: string,
  options: { baseUrl?: string; scopes?: string[]; ttlS?: number; fetch?: typeof fetch } = {},
): Promise<TokenResponse> {
  const client = new Sam2Client({ apiKey, ...(options.baseUrl ? { baseUrl: options.baseUrl } : {}), ...(options.fetch ? { fetch: options.fetch } : {}) });
  const body: Record<string, unknown> = {};
  if (options.scopes) body.scopes = options.scopes;
  if (options.ttlS) body.ttl_s = options.ttlS;
  return (await client.request("POST", "/v1/auth/token", body)) as unknown as TokenResponse;
}

export function retryDelay(attempt: number, retryAfter: string | null): number {
  if (retryAfter !== null && !Number.isNaN(Number(retryAfter))) return Math.min(Math.max(Number(retryAfter), 0), 60) * 1000;
  const delay = Math.min(INITIAL_RETRY_DELAY_MS * 2 ** attempt, MAX_RETRY_DELAY_MS);
  return delay * (1 - 0.25 * Math.random());
}

async function toBytes(image: ImageInput): Promise<Uint8Array> {
  if (image instanceof Uint8Array) return image;
  if (image instanceof ArrayBuffer) return new Uint8Array(image);
  return new Uint8Array(await image.arrayBuffer());
}

async function sha256(bytes: Uint8Array): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new Uint8Array(bytes));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Standard base64 of bytes, in chunks (String.fromCharCode takes a bounded argument list). */
export function toBase64(bytes: Uint8Array): string {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}
