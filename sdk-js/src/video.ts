// Video tracking: upload a clip once, open a session, prompt objects on any frame, and iterate
// over the tracked frames as the server streams them (NDJSON). A session lives in one server
// process; when it is gone (`session_not_found`) a VideoSession creates a new one on the same
// clip (uploading the clip again if the server lost it too), sends its prompts again in order,
// retries the call, and reports it through `onRecreated`: propagate again.

import { SessionNotFoundError, VideoNotFoundError } from "./core/errors.js";
import { decodeRle, encodeRle, type RleMask } from "./core/masks.js";
import { APIResource, type Requester } from "./core/resource.js";
import type { ImageInput, RequestOptions } from "./core/types.js";
import { lines } from "./internal/http.js";
import type { components } from "./internal/openapi.js";

type Schemas = components["schemas"];
export type VideoInfo = Schemas["VideoInfo"];
export type SessionInfo = Schemas["SessionInfo"];
export type VideoPrompt = Schemas["VideoPrompt"];
export type PropagationSummary = Schemas["PropagationSummary"];
type FrameResult = Schemas["FrameResult"];

export interface TrackedObject {
  objectId: number;
  /** Row-major, 1 inside; `width` x `height` (the clip's size). */
  mask: Uint8Array;
  area: number;
  bbox: number[];
  visible: boolean;
}

export interface TrackedFrame {
  frameIndex: number;
  objects: TrackedObject[];
  /** False on a propagation frame that a later pass of the same propagation tracks again
   * (`direction: "both"`: the frames between the two starts come twice; the second is kept). */
  final: boolean;
}

export interface UploadOptions extends RequestOptions {
  /** One MP4 or WebM file... */
  video?: ImageInput;
  /** ...or JPEG/PNG frames of one size, in order. */
  frames?: ImageInput[];
  start?: number;
  duration?: number;
  fps?: number;
}

export interface PropagateOptions extends RequestOptions {
  direction?: "forward" | "backward" | "both";
  startFrameIndex?: number;
  maxFrames?: number;
  /** Yield each frame once, with its final masks (skips the frames marked `final: false`). */
  finalOnly?: boolean;
}

type LogEntry = { method: string; suffix: string; body?: object };

/** `client.videos`: clips and sessions. */
export class Videos extends APIResource {
  private readonly sources = new Map<string, FormData>();

  /** A clip (or its frames) uploaded, cut by `start` and `duration` (seconds) and `fps`. */
  async upload(options: UploadOptions): Promise<VideoInfo> {
    if ((options.video === undefined) === (options.frames === undefined)) {
      throw new TypeError("pass `video` (an MP4/WebM file) or `frames` (images, in order)");
    }
    const form = new FormData();
    if (options.video !== undefined) form.append("video", await blob(options.video), "video");
    for (const [index, frame] of (options.frames ?? []).entries()) form.append("frames", await blob(frame), `frame-${index}`);
    for (const name of ["start", "duration", "fps"] as const) {
      if (options[name] !== undefined) form.append(name, String(options[name]));
    }
    return this.send(form, options.signal);
  }

  /** A new tracking session on an uploaded clip (a VideoInfo, or its `video_id`). */
  async session(video: VideoInfo | string, options: RequestOptions & { onRecreated?: (session: VideoSession) => void } = {}): Promise<VideoSession> {
    const info = typeof video === "string" ? await this.get(video, options) : video;
    return new VideoSession(this.client, this, info, await this.open(info.video_id, options.signal), options.onRecreated);
  }

  async get(videoId: string, options: RequestOptions = {}): Promise<VideoInfo> {
    return this.client.request<VideoInfo>("GET", `/v1/videos/${videoId}`, undefined, options.signal);
  }

  /** One stored frame as its image file (to show it, e.g. as an object URL). */
  async frame(videoId: string, frameIndex: number, options: RequestOptions = {}): Promise<Blob> {
    return this.client.download(`/v1/videos/${videoId}/frames/${frameIndex}`, options.signal);
  }

  /** @internal */
  async open(videoId: string, signal?: AbortSignal): Promise<SessionInfo> {
    return this.client.request<SessionInfo>("POST", `/v1/videos/${videoId}/sessions`, undefined, signal);
  }

  /** @internal The clip uploaded again, when the server lost it. */
  async resend(videoId: string, signal?: AbortSignal): Promise<VideoInfo> {
    const form = this.sources.get(videoId);
    if (!form) throw new VideoNotFoundError(404, { code: "video_not_found", detail: `clip ${videoId} is gone and was not uploaded by this client` });
    return this.send(form, signal);
  }

  private async send(form: FormData, signal?: AbortSignal): Promise<VideoInfo> {
    const info = await this.client.request<VideoInfo>("POST", "/v1/videos", form, signal);
    this.sources.set(info.video_id, form);
    while (this.sources.size > KEPT_CLIPS) this.sources.delete(this.sources.keys().next().value as string);
    return info;
  }
}

const KEPT_CLIPS = 4;

/** One tracking session. Made by `client.videos.session(video)`. */
export class VideoSession {
  /** How many times the server lost this session and it was recreated. */
  recreated = 0;
  /** The last propagation's closing line. */
  summary: PropagationSummary | undefined;
  private readonly log: LogEntry[] = [];

  constructor(
    private readonly client: Requester,
    private readonly videos: Videos,
    public video: VideoInfo,
    public info: SessionInfo,
    private readonly onRecreated?: (session: VideoSession) => void,
  ) {}

  get sessionId(): string {
    return this.info.session_id;
  }

  /** Points for one object on one frame (they replace its earlier points there: send them all): every object's masks. */
  addPoints(frameIndex: number, objectId: number, points: number[][], labels?: number[], options: RequestOptions = {}): Promise<TrackedFrame> {
    return this.frame("/prompts", prompt(frameIndex, objectId, { point_coords: points, ...(labels ? { point_labels: labels } : {}) }), options);
  }

  addBox(frameIndex: number, objectId: number, box: number[], options: RequestOptions = {}): Promise<TrackedFrame> {
    return this.frame("/prompts", prompt(frameIndex, objectId, { box_coords: box }), options);
  }

  /** A whole mask (row-major, the clip's size) as one object's prompt. */
  addMask(frameIndex: number, objectId: number, mask: Uint8Array, options: RequestOptions = {}): Promise<TrackedFrame> {
    const rle = encodeRle(mask, this.video.width, this.video.height);
    return this.frame("/prompts", prompt(frameIndex, objectId, { mask: rle as NonNullable<VideoPrompt["mask"]> }), options);
  }

  clear(frameIndex: number, objectId: number, options: RequestOptions = {}): Promise<TrackedFrame> {
    return this.frame("/clear", { frame_index: frameIndex, object_id: objectId, mask_format: "rle" }, options);
  }

  async removeObject(objectId: number, options: RequestOptions = {}): Promise<void> {
    this.info = await this.call<SessionInfo>("DELETE", `/objects/${objectId}`, undefined, options.signal);
  }

  async reset(options: RequestOptions = {}): Promise<void> {
    this.info = await this.call<SessionInfo>("POST", "/reset", undefined, options.signal);
  }

  async refresh(options: RequestOptions = {}): Promise<SessionInfo> {
    this.info = await this.call<SessionInfo>("GET", "", undefined, options.signal, false);
    return this.info;
  }

  async delete(options: RequestOptions = {}): Promise<void> {
    await this.client.request<void>("DELETE", this.path(""), undefined, options.signal);
  }

  /** Every prompted object tracked through the clip, one frame at a time as the server tracks
   * it; leaving the loop early (or aborting `signal`) stops the tracking. With `direction:
   * "both"` the frames between the two starts come twice (`final: false` the first time), unless
   * `finalOnly` is set. */
  async *propagate(options: PropagateOptions = {}): AsyncGenerator<TrackedFrame, void, undefined> {
    const body: Record<string, unknown> = { direction: options.direction ?? "both", mask_format: "rle" };
    if (options.startFrameIndex !== undefined) body.start_frame_index = options.startFrameIndex;
    if (options.maxFrames !== undefined) body.max_frames = options.maxFrames;
    let response: Response;
    try {
      response = await this.client.stream(this.path("/propagate"), body, options.signal);
    } catch (error) {
      if (!(error instanceof SessionNotFoundError)) throw error;
      await this.recreate(options.signal);
      response = await this.client.stream(this.path("/propagate"), body, options.signal);
    }
    for await (const line of lines(response)) {
      const answer = JSON.parse(line) as FrameResult | PropagationSummary;
      if (!("frame_index" in answer)) this.summary = answer;
      else if (answer.final !== false || !options.finalOnly) yield this.tracked(answer);
    }
  }

  private async frame(suffix: string, body: object, options: RequestOptions): Promise<TrackedFrame> {
    return this.tracked(await this.call<FrameResult>("POST", suffix, body, options.signal));
  }

  private async call<T>(method: string, suffix: string, body: object | undefined, signal?: AbortSignal, record = true): Promise<T> {
    let answer: T;
    try {
      answer = await this.client.request<T>(method, this.path(suffix), body, signal);
    } catch (error) {
      if (!(error instanceof SessionNotFoundError)) throw error;
      await this.recreate(signal);
      answer = await this.client.request<T>(method, this.path(suffix), body, signal);
    }
    if (record) {
      if (suffix === "/reset") this.log.length = 0;
      else this.log.push({ method, suffix, ...(body ? { body } : {}) });
    }
    return answer;
  }

  private async recreate(signal?: AbortSignal): Promise<void> {
    try {
      this.info = await this.videos.open(this.video.video_id, signal);
    } catch (error) {
      if (!(error instanceof VideoNotFoundError)) throw error;
      this.video = await this.videos.resend(this.video.video_id, signal);
      this.info = await this.videos.open(this.video.video_id, signal);
    }
    for (const entry of this.log) await this.client.request(entry.method, this.path(entry.suffix), entry.body, signal);
    this.recreated += 1;
    this.onRecreated?.(this);
  }

  private path(suffix: string): string {
    return `/v1/sessions/${this.info.session_id}${suffix}`;
  }

  private tracked(answer: FrameResult): TrackedFrame {
    return {
      frameIndex: answer.frame_index,
      objects: answer.objects.map((o) => ({
        objectId: o.object_id,
        mask: decodeRle(o.mask as RleMask),
        area: o.area,
        bbox: o.bbox,
        visible: o.visible,
      })),
      final: answer.final ?? true,
    };
  }
}

function prompt(frameIndex: number, objectId: number, fields: Partial<VideoPrompt>): VideoPrompt {
  return { frame_index: frameIndex, object_id: objectId, mask_format: "rle", ...fields };
}

async function blob(input: ImageInput): Promise<Blob> {
  if (input instanceof Blob) return input;
  const bytes = input instanceof Uint8Array ? input : new Uint8Array(input);
  return new Blob([bytes as Uint8Array<ArrayBuffer>]);
}
