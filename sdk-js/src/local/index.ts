// @sam2/sdk/local: clicks decoded on the user's device. The service computes an image's
// embedding once; `LocalSession` downloads it and the exported decoder (once per model: the
// service's ETag), then answers clicks, boxes and refinement with onnxruntime-web (an optional
// peer dependency) and no request. Its answers are the server's `Segmentation`s, upsampled and
// thresholded as sam2 does (bilinear with half-pixel centres, logits > 0).
//
//   import { Sam2Client } from "@sam2/sdk";
//   import { LocalSession } from "@sam2/sdk/local";
//   const local = await LocalSession.start(client, file, { onProgress: (p) => ... });
//   const click = await local.segment({ points: [[320, 240]] });

import type { Sam2Client } from "../client.js";
import { ImageNotCachedError, LocalDecodeError, Sam2Error } from "../core/errors.js";
import type { ImageInput, ModelInfo, Segmentation } from "../core/types.js";
import { parseEmbedding, SHAPES, type Embedding, type EmbeddingDtype, type TensorName } from "./embedding.js";

export { parseEmbedding, SHAPES, type Embedding, type EmbeddingDtype } from "./embedding.js";
export { LocalDecodeError } from "../core/errors.js";

/** The part of onnxruntime-web (or onnxruntime-node: the same API) this module uses. */
export interface OrtModule {
  InferenceSession: { create(model: Uint8Array, options?: object): Promise<OrtSession> };
  Tensor: new (type: "float32", data: Float32Array, dims: readonly number[]) => unknown;
  env: { wasm: { numThreads?: number } };
}

interface OrtSession {
  readonly inputNames: readonly string[];
  run(feeds: Record<string, unknown>): Promise<Record<string, { data: unknown; dims: readonly number[] }>>;
  release?(): Promise<void>;
}

export type Backend = "webgpu" | "wasm";

export interface Progress {
  file: "embedding" | "decoder";
  loaded: number;
  /** null when the service does not say the size. */
  total: number | null;
}

export interface LocalOptions {
  /** How the embedding comes: float16 (8 MiB, the default), float32 (16 MiB, the server's masks to IoU 0.999) or int8 (4 MiB). */
  dtype?: EmbeddingDtype;
  /** Where the decoder runs, in order of preference; default WebGPU where the browser has it, else WASM. */
  backends?: Backend[];
  /** WASM threads (onnxruntime-web's `env.wasm.numThreads`). More than 1 needs a cross-origin
   * isolated page (COOP/COEP headers); the default lets onnxruntime choose. */
  threads?: number;
  /** onnxruntime-web's module, or a function that imports it (`() => import("onnxruntime-web")`,
   * which a bundler splits off and loads only when asked); else it is imported by name. */
  ort?: OrtModule | (() => Promise<OrtModule>);
  onProgress?: (progress: Progress) => void;
  signal?: AbortSignal;
}

export interface LocalPrompt {
  points?: number[][];
  labels?: number[];
  box?: number[];
  multimask?: boolean;
  /** An earlier answer's `maskId` from this session: correct that mask (send all its points). */
  refine?: string | null;
  returnAllMasks?: boolean;
}

const INPUTS = ["image_embed", "high_res_feats_0", "high_res_feats_1", "point_coords", "point_labels", "mask_input", "has_mask_input", "orig_im_size"];
const KEPT_MASKS = 16;
const LOW = 256;
const PROBE = { points: [[0, 0]] };
const decoders = new WeakMap<Sam2Client, Map<string, { etag: string | null; bytes: Uint8Array }>>();

/** One image's clicks, decoded here. Made by `LocalSession.start(client, image)`. */
export class LocalSession {
  readonly imageId: string;
  readonly width: number;
  readonly height: number;
  readonly dtype: EmbeddingDtype;
  private readonly kept = new Map<string, Float32Array>();

  private constructor(
    private readonly ort: OrtModule,
    private readonly session: OrtSession,
    private readonly embedding: Embedding,
    readonly model: ModelInfo,
    /** Where the decoder runs. */
    readonly backend: Backend,
  ) {
    this.imageId = embedding.imageId;
    this.width = embedding.width;
    this.height = embedding.height;
    this.dtype = embedding.dtype;
  }

  /** Upload `image` once (or find it by its image_id), download its embedding and the decoder,
   * and load the decoder: every later `segment()` needs no request. */
  static async start(client: Sam2Client, image: ImageInput, options: LocalOptions = {}): Promise<LocalSession> {
    const ort = typeof options.ort === "function" ? await options.ort() : (options.ort ?? (await importOrt()));
    if (options.threads !== undefined) ort.env.wasm.numThreads = options.threads;
    const dtype = options.dtype ?? "float16";
    const signal = options.signal ? { signal: options.signal } : {};
    const progress = (file: Progress["file"]) => (loaded: number, total: number | null) => options.onProgress?.({ file, loaded, total });
    for (let round = 0; round < 2; round += 1) {
      // A click that uploads the image (or names it by image_id), then the embedding. If the
      // service let it go in between, the next round's click uploads it again.
      const probe = await client.segment(image, { ...PROBE, ...signal });
      let file;
      try {
        const path = `/v1/images/${encodeURIComponent(probe.imageId)}/embedding?dtype=${encodeURIComponent(dtype)}`;
        file = await client.file(path, { ...signal, onProgress: progress("embedding") });
      } catch (error) {
        if (error instanceof ImageNotCachedError && round === 0) continue;
        throw error;
      }
      const embedding = await parseEmbedding(file.bytes);
      if (embedding.model !== probe.model.name) {
        throw new LocalDecodeError(`the embedding is ${embedding.model}'s, the served model ${probe.model.name}`);
      }
      const decoder = await decoderFile(client, probe.model.name, signal, progress("decoder"));
      const [session, backend] = await load(ort, decoder, options.backends ?? defaultBackends());
      return new LocalSession(ort, session, embedding, probe.model, backend);
    }
    throw new Sam2Error("the service kept losing this image's embedding; try again");
  }

  /** Points and/or one box on this session's image, as `client.segment()` takes them. */
  async segment(prompt: LocalPrompt): Promise<Segmentation> {
    if (!prompt.points && !prompt.box) throw new Sam2Error("pass points, box or both");
    const started = performance.now();
    const refine = prompt.refine ? this.kept.get(prompt.refine) : undefined;
    if (prompt.refine && !refine) throw new Sam2Error(`no mask ${prompt.refine} is kept by this local session`);
    const { Tensor } = this.ort;
    const feeds: Record<string, unknown> = {};
    for (const name of Object.keys(SHAPES) as TensorName[]) feeds[name] = new Tensor("float32", this.embedding.tensors[name], SHAPES[name]);
    const { coords, labels } = decoderPoints(prompt);
    feeds.point_coords = new Tensor("float32", coords, [1, labels.length, 2]);
    feeds.point_labels = new Tensor("float32", labels, [1, labels.length]);
    feeds.mask_input = new Tensor("float32", refine ?? new Float32Array(LOW * LOW), [1, 1, LOW, LOW]);
    feeds.has_mask_input = new Tensor("float32", Float32Array.of(refine ? 1 : 0), [1]);
    feeds.orig_im_size = new Tensor("float32", Float32Array.of(this.height, this.width), [2]);
    const out = await this.session.run(feeds);
    const multimask = prompt.multimask ?? true;
    const logits = out[multimask ? "multi_masks" : "single_mask"]!.data as Float32Array;
    const scores = Array.from(out[multimask ? "multi_scores" : "single_score"]!.data as Float32Array);
    const best = scores.indexOf(Math.max(...scores));
    const low = logits.subarray(best * LOW * LOW, (best + 1) * LOW * LOW);
    const maskId = this.keep(low);
    const elapsed = performance.now() - started;
    return {
      mask: upsampleMask(low, this.height, this.width),
      width: this.width,
      height: this.height,
      score: scores[best]!,
      allScores: scores,
      imageId: this.imageId,
      cached: true,
      timingsMs: { decode_ms: 0, embed_ms: 0, predict_ms: elapsed, encode_ms: 0, total_ms: elapsed },
      model: this.model,
      masks: [],
      boxScores: [],
      allMasks: prompt.returnAllMasks ? scores.map((_, i) => upsampleMask(logits.subarray(i * LOW * LOW, (i + 1) * LOW * LOW), this.height, this.width)) : [],
      warnings: ["decoded locally"],
      maskId,
      boxMaskIds: [],
      overlay: null,
    };
  }

  /** Whether `maskId` is a mask this session answered (and still keeps), to refine. */
  has(maskId: string): boolean {
    return this.kept.has(maskId);
  }

  /** Free the decoder's memory (WebGPU buffers, the WASM heap). */
  async close(): Promise<void> {
    await this.session.release?.();
  }

  private keep(low: Float32Array): string {
    const maskId = "msk_" + Array.from(crypto.getRandomValues(new Uint8Array(12)), (b) => b.toString(16).padStart(2, "0")).join("");
    this.kept.set(maskId, low.map((v) => Math.min(32, Math.max(-32, v)))); // sam2 clamps the logits it keeps
    while (this.kept.size > KEPT_MASKS) this.kept.delete(this.kept.keys().next().value!);
    return maskId;
  }
}

/** The decoder's prompt inputs in sam2's layout: box corners (labels 2, 3), the points, then
 * the padding point sam2 appends (label -1), in pixels of the original image. */
export function decoderPoints(prompt: LocalPrompt): { coords: Float32Array; labels: Float32Array } {
  const coords: number[] = [];
  const labels: number[] = [];
  if (prompt.box) {
    const [x0, y0, x1, y1] = prompt.box;
    coords.push(x0!, y0!, x1!, y1!);
    labels.push(2, 3);
  }
  for (const [i, point] of (prompt.points ?? []).entries()) {
    coords.push(point[0]!, point[1]!);
    labels.push(prompt.labels?.[i] ?? 1);
  }
  coords.push(0, 0);
  labels.push(-1);
  return { coords: Float32Array.from(coords), labels: Float32Array.from(labels) };
}

/** 256 x 256 logits to a height x width mask: bilinear with half-pixel centres (torch's
 * `align_corners=False`, as sam2 upsamples), then > 0. */
export function upsampleMask(low: Float32Array, height: number, width: number): Uint8Array {
  const [ys0, ys1, fys] = axis(LOW, height);
  const [xs0, xs1, fxs] = axis(LOW, width);
  const mask = new Uint8Array(height * width);
  for (let y = 0; y < height; y += 1) {
    const row0 = ys0[y]! * LOW;
    const row1 = ys1[y]! * LOW;
    const fy = fys[y]!;
    for (let x = 0; x < width; x += 1) {
      const x0 = xs0[x]!;
      const x1 = xs1[x]!;
      const fx = fxs[x]!;
      const top = low[row0 + x0]! * (1 - fx) + low[row0 + x1]! * fx;
      const bottom = low[row1 + x0]! * (1 - fx) + low[row1 + x1]! * fx;
      mask[y * width + x] = top * (1 - fy) + bottom * fy > 0 ? 1 : 0;
    }
  }
  return mask;
}

function axis(sizeIn: number, sizeOut: number): [Int32Array, Int32Array, Float32Array] {
  const low = new Int32Array(sizeOut);
  const high = new Int32Array(sizeOut);
  const frac = new Float32Array(sizeOut);
  const scale = sizeIn / sizeOut;
  for (let i = 0; i < sizeOut; i += 1) {
    const source = Math.max((i + 0.5) * scale - 0.5, 0);
    low[i] = Math.min(Math.floor(source), sizeIn - 1);
    high[i] = Math.min(low[i]! + 1, sizeIn - 1);
    frac[i] = source - low[i]!;
  }
  return [low, high, frac];
}

/** The decoder of `name`: kept per client, revalidated with the service's ETag (a 304 has no
 * body; a browser's HTTP cache keeps it across pages too). */
async function decoderFile(client: Sam2Client, name: string, signal: { signal?: AbortSignal }, onProgress: (loaded: number, total: number | null) => void): Promise<Uint8Array> {
  const kept = decoders.get(client) ?? new Map();
  decoders.set(client, kept);
  const known = kept.get(name);
  const answer = await client.file(`/v1/models/${encodeURIComponent(name)}/decoder.onnx`, { ...signal, onProgress, ...(known?.etag ? { etag: known.etag } : {}) });
  if (answer.notModified && known) return known.bytes;
  kept.set(name, { etag: answer.etag, bytes: answer.bytes });
  return answer.bytes;
}

async function load(ort: OrtModule, decoder: Uint8Array, backends: Backend[]): Promise<[OrtSession, Backend]> {
  let lastError: unknown;
  for (const backend of backends) {
    try {
      const session = await ort.InferenceSession.create(decoder, { executionProviders: [backend] });
      if (INPUTS.some((name) => !session.inputNames.includes(name))) {
        throw new LocalDecodeError("the decoder is not this SDK's: its inputs differ");
      }
      return [session, backend];
    } catch (error) {
      if (error instanceof LocalDecodeError) throw error;
      lastError = error;
    }
  }
  throw new LocalDecodeError(`the decoder could not be loaded (${backends.join(", ")}): ${String(lastError)}`);
}

function defaultBackends(): Backend[] {
  const host = globalThis as { navigator?: { gpu?: unknown } };
  return host.navigator?.gpu ? ["webgpu", "wasm"] : ["wasm"];
}

async function importOrt(): Promise<OrtModule> {
  try {
    const name = "onnxruntime-web"; // a variable: bundlers leave the optional peer alone until used
    return (await import(/* @vite-ignore */ name)) as OrtModule;
  } catch {
    throw new Sam2Error("local decoding needs onnxruntime-web: npm install onnxruntime-web (or pass `ort`)");
  }
}
