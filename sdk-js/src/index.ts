export * from "./core/errors.js";
export { Sam2Client, createToken } from "./client.js";
export { retryDelay, RETRY_STATUSES } from "./internal/http.js";
export type {
  AutoOptions,
  AutoSegmentation,
  AutoSegmentResponse,
  BatchItemError,
  BatchResult,
  BatchSegmentResponse,
  ClientOptions,
  ModelInfo,
  ModelsResponse,
  PolygonMask,
  PromptOptions,
  PromptSegmentResponse,
  SegmentObject,
  Segmentation,
  SegmentRequest,
  Timings,
  TokenResponse,
  UsageResponse,
} from "./client.js";
export type { ImageInput, RequestOptions } from "./core/types.js";
export { APIResource, type Requester } from "./core/resource.js";
export { decodeRle, encodeRle, maskToImageData, maskToRgba, type RleMask } from "./core/masks.js";
export { Videos, VideoSession } from "./video.js";
export { Jobs, type CreateJobOptions, type JobInfo, type JobItemPending, type JobResult } from "./jobs.js";
export { verifyWebhook, WebhookVerificationError } from "./core/webhooks.js";
export type { PropagateOptions, PropagationSummary, SessionInfo, TrackedFrame, TrackedObject, UploadOptions, VideoInfo } from "./video.js";

import { toBase64 } from "./client.js";
import { errorFor } from "./core/errors.js";

/** The original example's helper: the original request, the original JSON answer back. */
export async function segmentImage(
  imageFile: Blob,
  options: {
    endpointUrl: string;
    pointCoords?: number[][];
    pointLabels?: number[];
    boxCoords?: number[];
    mode?: "point" | "box" | "auto";
    apiKey?: string;
    fetch?: typeof fetch;
  },
): Promise<Record<string, unknown>> {
  const bytes = new Uint8Array(await imageFile.arrayBuffer());
  const body: Record<string, unknown> = { image: toBase64(bytes), mode: options.mode ?? "point" };
  if (options.pointCoords) body.point_coords = options.pointCoords;
  if (options.pointLabels) body.point_labels = options.pointLabels;
  if (options.boxCoords) body.box_coords = options.boxCoords;
  const url = new URL(options.endpointUrl);
  if (url.pathname === "/" || url.pathname === "") url.pathname = "/v1/segment";
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (options.apiKey) headers.authorization = `Bearer ${options.apiKey}`;
  const response = await (options.fetch ?? fetch)(url, { method: "POST", headers, body: JSON.stringify(body) });
  const answer = await response.json();
  if (!response.ok) throw errorFor(response.status, answer);
  return answer as Record<string, unknown>;
}
