// Types every part of the SDK shares, with no code: what an image may be, per-call options, the
// contract's types (generated from openapi.json) and the answers as the client returns them.

import type { components } from "../internal/openapi.js";

export type ImageInput = Blob | ArrayBuffer | Uint8Array;

export interface RequestOptions {
  /** Abort the call: the connection closes, and the service stops the request's work. */
  signal?: AbortSignal;
}

type Schemas = components["schemas"];
export type SegmentRequest = Schemas["SegmentRequest"];
export type PromptSegmentResponse = Schemas["PromptSegmentResponse"];
export type AutoSegmentResponse = Schemas["AutoSegmentResponse"];
export type BatchSegmentResponse = Schemas["BatchSegmentResponse"];
export type ModelsResponse = Schemas["ModelsResponse"];
export type ModelInfo = Schemas["ModelInfo"];
/** A mask in the API's `polygon` format (`mask_format: "polygon"` over plain REST; this client asks for RLE and decodes it). */
export type PolygonMask = Schemas["PolygonMask"];
export type Timings = Schemas["Timings"];
export type TokenResponse = Schemas["TokenResponse"];
/** A key's usage per UTC day and its tier's limits (`client.usage()`). */
export type UsageResponse = Schemas["UsageResponse"];
/** The automatic-mode knobs (points_per_side, pred_iou_thresh, ...), as the API names them. */
export type AutoOptions = Omit<Partial<SegmentRequest>, "image" | "image_id" | "mode" | "mask_format">;

export interface Segmentation {
  mask: Uint8Array;
  width: number;
  height: number;
  score: number;
  allScores: number[];
  imageId: string;
  cached: boolean;
  timingsMs: Timings;
  /** The model that answered, and whether it runs random weights. */
  model: ModelInfo;
  /** Every box's or object's best mask, in order, for a box list or `objects`. */
  masks: Uint8Array[];
  /** Every box's or object's scores, for a box list or `objects`. */
  boxScores: number[][];
  /** Every candidate mask, in `allScores` order, when asked for with `returnAllMasks`. */
  allMasks: Uint8Array[];
  /** What the server warns about, e.g. that it runs random weights. */
  warnings: string[];
  /** Pass as `refine` with corrected points to improve this mask; null if it could not be kept. */
  maskId: string | null;
  /** Every box's or object's `maskId`, for a box list or `objects`: refine each with its own. */
  boxMaskIds: (string | null)[];
  /** With `render`: base64 PNG/JPEG of the image with the masks drawn (`data:image/png;base64,` + it). */
  overlay: string | null;
}

export interface AutoSegmentation {
  masks: { mask: Uint8Array; area: number; bbox: number[]; predictedIou: number; stabilityScore: number }[];
  width: number;
  height: number;
  imageId: string;
  cached: boolean;
  timingsMs: Timings;
  model: ModelInfo;
  warnings: string[];
  /** With `render` (in the knobs): base64 PNG/JPEG of the image with the masks drawn. */
  overlay: string | null;
}

/** One batch item that failed; the others still ran. */
export interface BatchItemError {
  status: number;
  code: string;
  detail: string;
  hint: string | undefined;
}

export type BatchResult = Segmentation | AutoSegmentation | BatchItemError;
