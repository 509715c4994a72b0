// Answers as the client returns them, with no I/O: the contract's JSON (its masks as RLE, as
// the client asks for them) made into `Segmentation` and `AutoSegmentation`.

import type { AutoSegmentation, AutoSegmentResponse, PromptSegmentResponse, Segmentation } from "../core/types.js";
import { Sam2Error } from "../core/errors.js";
import { decodeRle } from "../core/masks.js";

export function promptResult(answer: PromptSegmentResponse): Segmentation {
  const [height = 0, width = 0] = answer.image_shape;
  return {
    mask: decodeWire(answer.mask),
    width,
    height,
    score: answer.score,
    allScores: answer.all_scores,
    imageId: answer.image_id,
    cached: answer.cached,
    timingsMs: answer.timings_ms,
    model: answer.model,
    masks: (answer.predictions ?? []).map((p) => decodeWire(p.mask)),
    boxScores: (answer.predictions ?? []).map((p) => p.all_scores),
    allMasks: (answer.all_masks ?? []).map(decodeWire),
    warnings: answer.warnings ?? [],
    maskId: answer.mask_id ?? null,
    boxMaskIds: (answer.predictions ?? []).map((p) => p.mask_id ?? null),
    overlay: answer.overlay ?? null,
  };
}

export function autoResult(answer: AutoSegmentResponse): AutoSegmentation {
  const [height = 0, width = 0] = answer.image_shape;
  return {
    masks: answer.masks.map((m) => ({
      mask: decodeWire(m.segmentation),
      area: m.area,
      bbox: m.bbox,
      predictedIou: m.predicted_iou,
      stabilityScore: m.stability_score,
    })),
    width,
    height,
    imageId: answer.image_id,
    cached: answer.cached,
    timingsMs: answer.timings_ms,
    model: answer.model,
    warnings: answer.warnings ?? [],
    overlay: answer.overlay ?? null,
  };
}

/** A mask as the client asks for it (RLE); the other formats are for other clients. */
function decodeWire(mask: PromptSegmentResponse["mask"]): Uint8Array {
  if (typeof mask === "object" && !Array.isArray(mask) && "counts" in mask) return decodeRle(mask);
  throw new Sam2Error("expected an RLE mask: this client asks for mask_format rle");
}
