// Sam2Client: a small fetch-based client with the Python SDK's retry rules and error names.
// After the first call on an image it sends only the image's `image_id`, and sends the image
// again by itself when the service answers `image_not_cached`. Its public request primitives
// (`request`, `stream`, `download`: one loop, `send`) are what resources such as `videos` call.

import { APIConnectionError, APITimeoutError, APIUserAbortError, ImageNotCachedError, Sam2Error, errorFor } from "./core/errors.js";
import type {
  AutoOptions,
  AutoSegmentation,
  AutoSegmentResponse,
  BatchResult,
  BatchSegmentResponse,
  ModelsResponse,
  PromptSegmentResponse,
  Segmentation,
  SegmentRequest,
  TokenResponse,
  UsageResponse,
  ImageInput,
  RequestOptions,
} from "./core/types.js";
import { RETRY_STATUSES, requestInit, retryDelay } from "./internal/http.js";
import type { components } from "./internal/openapi.js";
import { autoResult, promptResult } from "./internal/results.js";
import { Jobs } from "./jobs.js";
import { Videos } from "./video.js";

export type {
  ImageInput,
  RequestOptions,
  SegmentRequest,
  PromptSegmentResponse,
  AutoSegmentResponse,
  BatchSegmentResponse,
  ModelsResponse,
  ModelInfo,
  PolygonMask,
  Timings,
  TokenResponse,
  UsageResponse,
  AutoOptions,
  Segmentation,
  AutoSegmentation,
  BatchItemError,
  BatchResult,
} from "./core/types.js";
export { RETRY_STATUSES, retryDelay } from "./internal/http.js";

type Schemas = components["schemas"];

const TOKEN_REFRESH_MARGIN_S = 30;
const MAX_RESENDS = 2;

export interface ClientOptions {
  /** An API key (servers only; in Node, SAM2_API_KEY when not given), or... */
  apiKey?: string;
  /** ...a function that returns a fresh token (browsers); refreshed before it expires. */
  getToken?: () => Promise<TokenResponse>;
  /** In Node, SAM2_BASE_URL when not given; else http://127.0.0.1:8080. */
  baseUrl?: string;
  fetch?: typeof fetch;
  maxRetries?: number;
  /** Per attempt; a cold GPU container can take a minute. */
  timeoutMs?: number;
  sleep?: (ms: number) => Promise<void>;
}

/** One object of several segmented in one call: its own points and/or one box. */
export interface SegmentObject {
  points?: number[][];
  labels?: number[];
  box?: number[];
  /** This object's earlier `maskId` (from `boxMaskIds`), to correct that mask. */
  refine?: string | null;
}

export interface PromptOptions extends RequestOptions {
  /** Several objects in one call, one mask each (in `masks`), decoded together; replaces points, box and refine. */
  objects?: SegmentObject[];
  points?: number[][];
  labels?: number[];
  box?: number[];
  boxes?: number[][];
  multimask?: boolean;
  returnAllMasks?: boolean;
  /** An earlier answer's `maskId` on this image: this call corrects that mask (send all the object's points). */
  refine?: string | null;
  /** Also get `overlay`, the image with the masks drawn, as a PNG or JPEG preview. */
  render?: "png" | "jpeg";
}

type Answer = PromptSegmentResponse | AutoSegmentResponse | BatchSegmentResponse;

export class Sam2Client {
  readonly baseUrl: string;
  private readonly apiKey: string | undefined;
  private readonly fetchImpl: typeof fetch;
  private readonly maxRetries: number;
  private readonly timeoutMs: number;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly imageIds = new Map<string, string>();
  private readonly uploads = new Map<string, Promise<unknown>>();
  private token: TokenResponse | undefined;
  /** Clips and tracking sessions: `client.videos.upload(...)`, `.session(video)`. */
  readonly videos: Videos = new Videos(this);
  /** Batch jobs: `client.jobs.create(items, { request })`, `.wait(jobId)`, `.results(jobId)`. */
  readonly jobs: Jobs = new Jobs(this);

  constructor(private readonly options: ClientOptions = {}) {
    this.apiKey = options.apiKey ?? environment("SAM2_API_KEY");
    if (!this.apiKey && !options.getToken) {
      throw new Sam2Error("pass apiKey (servers; or set SAM2_API_KEY) or getToken (browsers)");
    }
    this.baseUrl = (options.baseUrl ?? environment("SAM2_BASE_URL") ?? "http://127.0.0.1:8080").replace(/\/+$/, "");
    this.fetchImpl = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.maxRetries = options.maxRetries ?? 2;
    this.timeoutMs = options.timeoutMs ?? 300_000;
    this.sleep = options.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
  }

  /** Points and/or a box (or several boxes, or several `objects`, one mask each). */
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
    if (prompt.refine) fields.refine = prompt.refine;
    if (prompt.objects) fields.objects = prompt.objects.map(objectFields);
    if (prompt.render) fields.render = prompt.render;
    const answer = await this.onImage<PromptSegmentResponse>(image, "/v1/segment", fields, prompt.signal);
    return promptResult(answer);
  }

  /** Everything in the image, with the automatic-mode knobs the API lists. */
  async segmentAuto(image: ImageInput, knobs: AutoOptions = {}, options: RequestOptions = {}): Promise<AutoSegmentation> {
    const fields = { ...knobs, mode: "auto" as const, mask_format: "rle" as const };
    return autoResult(await this.onImage<AutoSegmentResponse>(image, "/v1/segment", fields, options.signal));
  }

  /** Several prompt sets (API field names) on one image in one call, the image uploaded once;
   * each item succeeds or fails alone. */
  async segmentBatch(image: ImageInput, requests: Partial<SegmentRequest>[], options: RequestOptions = {}): Promise<BatchResult[]> {
    const items = requests.map((request) => ({ mask_format: "rle" as const, ...request }));
    const answer = await this.onImage<BatchSegmentResponse>(image, "/v1/segment/batch", { requests: items }, options.signal);
    return answer.results.map((item): BatchResult => {
      if (item.result) return "masks" in item.result ? autoResult(item.result) : promptResult(item.result);
      const error = item.error;
      return { status: item.status, code: error?.code ?? "internal_error", detail: error?.detail ?? "", hint: error?.hint ?? undefined };
    });
  }

  /** The SAM 2.1 models and the one being served. */
  async models(options: RequestOptions = {}): Promise<ModelsResponse> {
    return this.request<ModelsResponse>("GET", "/v1/models", undefined, options.signal);
  }

  /** This key's usage per UTC day over the last `days` (default 30, today included), and its
   * limits. API keys only (on your server): a browser token is refused. */
  async usage(options: RequestOptions & { days?: number } = {}): Promise<UsageResponse> {
    const days = options.days ?? 30;
    return this.request<UsageResponse>("GET", `/v1/usage?days=${encodeURIComponent(days)}`, undefined, options.signal);
  }

  /** Send `fields` about `image`: by `image_id` once the service has it (resending the image
   * when it has let it go), and one upload per new image however many calls are in flight. */
  private async onImage<T extends Answer>(image: ImageInput, path: string, fields: object, signal: AbortSignal | undefined): Promise<T> {
    const bytes = await toBytes(image);
    const fingerprint = await sha256(bytes);
    for (let round = 0; round <= MAX_RESENDS; round += 1) {
      const known = this.imageIds.get(fingerprint);
      if (known !== undefined) {
        try {
          const answer = await this.request<T>("POST", path, { ...fields, image_id: known }, signal);
          if (!missed(answer)) return answer;
        } catch (error) {
          if (!(error instanceof ImageNotCachedError)) throw error;
        }
        if (this.imageIds.get(fingerprint) === known) this.imageIds.delete(fingerprint);
        continue;
      }
      const pending = this.uploads.get(fingerprint);
      if (pending) {
        await pending.catch(() => undefined); // its outcome is in imageIds, or not
        if (this.imageIds.has(fingerprint)) continue;
      }
      const upload = this.request<T>("POST", path, multipart(bytes, fields), signal);
      this.uploads.set(fingerprint, upload);
      try {
        const answer = await upload;
        const imageId = idOf(answer);
        if (imageId) this.imageIds.set(fingerprint, imageId);
        return answer;
      } finally {
        if (this.uploads.get(fingerprint) === upload) this.uploads.delete(fingerprint);
      }
    }
    throw new Sam2Error("the service kept losing this image's embedding; try again");
  }

  /** One call with retries; `body` is sent as JSON, or as it is when it is `FormData`. */
  async request<T>(method: string, path: string, body?: unknown, signal?: AbortSignal, headers?: Record<string, string>): Promise<T> {
    return this.send(
      method,
      path,
      body,
      signal,
      async (response) => {
        if (response.status === 204) return undefined as T; // nothing to read (a deletion)
        return (await response.json()) as T; // the JSON the OpenAPI types describe
      },
      false,
      headers,
    );
  }

  /** POST `body` (GET when it is undefined) and answer the response once it is known to
   * succeed, its body unread (a stream: the timeout covers the wait for its first byte). */
  async stream(path: string, body: unknown, signal?: AbortSignal): Promise<Response> {
    return this.send(body === undefined ? "GET" : "POST", path, body, signal, async (response) => response, true);
  }

  /** GET a file (an image the service stores). */
  async download(path: string, signal?: AbortSignal): Promise<Blob> {
    return this.send("GET", path, undefined, signal, (response) => response.blob());
  }

  /** GET a file as bytes, with its progress and `If-None-Match` (a 304 answers
   * `notModified` and no bytes): what local decoding downloads. */
  async file(path: string, options: FileOptions = {}): Promise<FileAnswer> {
    const headers = options.etag ? { "if-none-match": options.etag } : undefined;
    return this.send("GET", path, undefined, options.signal, (response) => readFile(response, options.onProgress), false, headers);
  }

  /** The one request loop of the three primitives: retries (RETRY_STATUSES, transport errors),
   * a timeout per attempt, the caller's abort, and errors as the Python SDK names them. */
  private async send<T>(
    method: string,
    path: string,
    body: unknown,
    signal: AbortSignal | undefined,
    read: (response: Response) => Promise<T>,
    streaming = false,
    headers?: Record<string, string>,
  ): Promise<T> {
    for (let attempt = 0; ; attempt += 1) {
      const last = attempt >= this.maxRetries;
      if (signal?.aborted) throw new APIUserAbortError("the request was aborted");
      const timeout = new AbortController();
      const timer = setTimeout(() => timeout.abort(new DOMException("the call took too long", "TimeoutError")), this.timeoutMs);
      let response: Response;
      try {
        const init = requestInit(method, `Bearer ${await this.credential()}`, body, headers);
        init.signal = signal ? AbortSignal.any([signal, timeout.signal]) : timeout.signal;
        response = await this.fetchImpl(this.baseUrl + path, init);
      } catch (error) {
        clearTimeout(timer);
        if (signal?.aborted) throw new APIUserAbortError("the request was aborted");
        const timedOut = error instanceof Error && (error.name === "TimeoutError" || error.name === "AbortError");
        if (!last) {
          await this.sleep(retryDelay(attempt, null));
          continue;
        }
        throw timedOut ? new APITimeoutError("the service did not answer in time") : new APIConnectionError(`cannot reach ${this.baseUrl}: ${String(error)}`);
      }
      if (streaming) clearTimeout(timer);
      try {
        if (response.ok || response.status === 304) return await read(response);
        if (RETRY_STATUSES.has(response.status) && !last) {
          await response.body?.cancel().catch(() => undefined);
          await this.sleep(retryDelay(attempt, response.headers.get("retry-after")));
          continue;
        }
        const problem = await response.json().catch(() => ({}));
        throw errorFor(response.status, problem, response.headers.get("x-request-id") ?? undefined);
      } finally {
        clearTimeout(timer);
      }
    }
  }

  private async credential(): Promise<string> {
    if (this.apiKey) return this.apiKey;
    const now = Date.now() / 1000;
    if (!this.token || this.token.expires_at - TOKEN_REFRESH_MARGIN_S <= now) {
      this.token = await this.options.getToken!();
    }
    return this.token.token;
  }
}

export interface FileOptions extends RequestOptions {
  /** The ETag of a copy you keep: the service answers 304 (`notModified`) when it is current. */
  etag?: string;
  /** Called as the file arrives: bytes so far, and the total when the service says it. */
  onProgress?: (loaded: number, total: number | null) => void;
}

export interface FileAnswer {
  bytes: Uint8Array;
  etag: string | null;
  notModified: boolean;
}

async function readFile(response: Response, onProgress: FileOptions["onProgress"]): Promise<FileAnswer> {
  const etag = response.headers.get("etag");
  if (response.status === 304) return { bytes: new Uint8Array(0), etag, notModified: true };
  const length = Number(response.headers.get("content-length"));
  const total = Number.isFinite(length) && length > 0 ? length : null;
  const parts: Uint8Array[] = [];
  let loaded = 0;
  const reader = response.body?.getReader();
  onProgress?.(0, total);
  for (;;) {
    const chunk = reader ? await reader.read() : { done: true as const, value: undefined };
    if (chunk.done) break;
    parts.push(chunk.value);
    loaded += chunk.value.byteLength;
    onProgress?.(loaded, total);
  }
  const bytes = new Uint8Array(loaded);
  let offset = 0;
  for (const part of parts) {
    bytes.set(part, offset);
    offset += part.byteLength;
  }
  return { bytes, etag, notModified: false };
}

/** An upload as `multipart/form-data`: the image file as it is (a third smaller than base64)
 * in an `image` part, the other fields as JSON in a `request` part. */
function multipart(bytes: Uint8Array, fields: object): FormData {
  const form = new FormData();
  form.append("image", new Blob([bytes as Uint8Array<ArrayBuffer>]), "image");
  form.append("request", JSON.stringify(fields));
  return form;
}

function objectFields(object: SegmentObject): Schemas["ObjectPrompt"] {
  const fields: Schemas["ObjectPrompt"] = {};
  if (object.points) fields.point_coords = object.points;
  if (object.labels) fields.point_labels = object.labels;
  if (object.box) fields.box_coords = object.box;
  if (object.refine) fields.refine = object.refine;
  return fields;
}

function idOf(answer: Answer): string | undefined {
  if ("image_id" in answer) return answer.image_id;
  return answer.results.find((item) => item.result)?.result?.image_id;
}

/** Whether a batch sent by image_id found the embedding gone (its items say so). */
function missed(answer: Answer): boolean {
  return "results" in answer && answer.results.some((item) => item.error?.code === "image_not_cached");
}

/** A Node environment variable, or undefined in a browser. */
function environment(name: string): string | undefined {
  const host = globalThis as { process?: { env?: Record<string, string | undefined> } };
  return host.process?.env?.[name] || undefined;
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
  return client.request<TokenResponse>("POST", "/v1/auth/token", body);
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
