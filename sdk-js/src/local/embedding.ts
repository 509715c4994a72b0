// An image's embedding file (safetensors, sam2_contract/embedding.py) read with no library: an
// 8-byte little-endian header length, a JSON header, the raw data. Every check the Python reader
// makes is made here: the digest of the data, each tensor's byte range and shape, so a damaged
// or truncated download is an error and never a wrong mask.

import { LocalDecodeError } from "../core/errors.js";

export type EmbeddingDtype = "float32" | "float16" | "int8";

export const SHAPES = {
  image_embed: [1, 256, 64, 64],
  high_res_feats_0: [1, 32, 256, 256],
  high_res_feats_1: [1, 64, 128, 128],
} as const;

export type TensorName = keyof typeof SHAPES;

export interface Embedding {
  /** The three feature tensors as float32, in SHAPES' layout. */
  tensors: Record<TensorName, Float32Array>;
  imageId: string;
  height: number;
  width: number;
  dtype: EmbeddingDtype;
  model: string;
}

const MAX_HEADER_BYTES = 1 << 16;
const BYTES = { F32: 4, F16: 2, I8: 1 } as const;

interface Spec {
  dtype: keyof typeof BYTES;
  shape: number[];
  data_offsets: [number, number];
}

/** The float32 tensors and metadata of an embedding file, or a LocalDecodeError saying what is wrong. */
export async function parseEmbedding(file: Uint8Array): Promise<Embedding> {
  if (file.byteLength < 8) throw damaged("too short for a safetensors file");
  const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const length = Number(view.getBigUint64(0, true));
  if (length > MAX_HEADER_BYTES || 8 + length > file.byteLength) throw damaged("the safetensors header is larger than the file");
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(new TextDecoder().decode(file.subarray(8, 8 + length))) as Record<string, unknown>;
  } catch {
    throw damaged("the safetensors header is not JSON");
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) throw damaged("the safetensors header is not a JSON object");
  const metadata = (header.__metadata__ ?? {}) as Record<string, string>;
  if (metadata.format !== "sam2-embedding") throw damaged("not a sam2-embedding file");
  const body = file.subarray(8 + length);
  if ((await sha256(body)) !== metadata.sha256) throw damaged("its data does not match its sha256: the file is truncated or altered");
  const tensors = {} as Record<TensorName, Float32Array>;
  for (const name of Object.keys(SHAPES) as TensorName[]) {
    const spec = header[name] as Spec | undefined;
    if (!spec || spec.shape?.join() !== SHAPES[name].join()) throw damaged(`tensor ${name} is missing or not [${SHAPES[name].join(", ")}]`);
    const values = read(name, spec, body);
    const scaleSpec = header[`${name}.scale`] as Spec | undefined;
    if (scaleSpec) scale(values, read(`${name}.scale`, scaleSpec, body), SHAPES[name]);
    tensors[name] = values;
  }
  const height = Number(metadata.height);
  const width = Number(metadata.width);
  if (!(Number.isInteger(height) && height > 0 && Number.isInteger(width) && width > 0)) throw damaged("its image size is not two positive integers");
  return { tensors, imageId: String(metadata.image_id), height, width, dtype: metadata.dtype as EmbeddingDtype, model: String(metadata.model) };
}

function damaged(why: string): LocalDecodeError {
  return new LocalDecodeError(`the embedding download is damaged (${why}); start the local session again`);
}

/** One tensor as float32, checked against its byte range (little-endian data, as every
 * platform a browser runs on is). */
function read(name: string, spec: Spec, body: Uint8Array): Float32Array {
  const size = BYTES[spec.dtype];
  const [begin, end] = spec.data_offsets ?? [];
  const count = (spec.shape ?? []).reduce((a, b) => a * b, 1);
  if (!size || !(begin! >= 0 && begin! <= end! && end! <= body.byteLength) || end! - begin! !== count * size) {
    throw damaged(`tensor ${name} does not fit its byte range`);
  }
  const bytes = body.slice(begin, end); // a copy: aligned for the typed arrays below
  if (spec.dtype === "F32") return new Float32Array(bytes.buffer);
  if (spec.dtype === "I8") return Float32Array.from(new Int8Array(bytes.buffer));
  const halves = new Uint16Array(bytes.buffer);
  const out = new Float32Array(count);
  for (let i = 0; i < count; i += 1) out[i] = half(halves[i]!);
  return out;
}

/** int8 values times their channel's scale (axis 1 of N x C x H x W). */
function scale(values: Float32Array, scales: Float32Array, shape: readonly number[]): void {
  const plane = shape[2]! * shape[3]!;
  if (scales.length !== shape[1]) throw damaged("its scales are not one per channel");
  for (let c = 0; c < scales.length; c += 1) {
    const s = scales[c]!;
    for (let i = c * plane, end = i + plane; i < end; i += 1) values[i]! *= s;
  }
}

/** An IEEE 754 half-precision value. */
function half(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  if (exponent === 0) return sign * fraction * 2 ** -24;
  if (exponent === 31) return fraction ? NaN : sign * Infinity;
  return sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
}

async function sha256(bytes: Uint8Array): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}
