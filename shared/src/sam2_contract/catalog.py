"""The catalogue of error codes: every code a client can see, with its one HTTP status, title
and default fix-it hint (docs/api.md lists them; tests/shared/test_docs.py checks it). The
exceptions that carry them are in errors.py."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ErrorCode(StrEnum):
    """Stable machine-readable error codes; clients may branch on them."""

    INVALID_JSON = "invalid_json"
    INVALID_REQUEST = "invalid_request"
    UNKNOWN_FIELD = "unknown_field"
    INVALID_MODE = "invalid_mode"
    INVALID_MASK_FORMAT = "invalid_mask_format"
    UNKNOWN_MODEL = "unknown_model"
    INVALID_PARAMETER = "invalid_parameter"
    MISSING_IMAGE = "missing_image"
    IMAGE_AND_IMAGE_ID = "image_and_image_id"
    INVALID_IMAGE_ID = "invalid_image_id"
    INVALID_IMAGE_URL = "invalid_image_url"
    IMAGE_URL_FORBIDDEN = "image_url_forbidden"
    IMAGE_URL_UNREACHABLE = "image_url_unreachable"
    INVALID_MASK_ID = "invalid_mask_id"
    REFINE_NOT_ALLOWED = "refine_not_allowed"
    TOO_COMPLEX_FOR_POLYGONS = "too_complex_for_polygons"
    MISSING_POINTS = "missing_points"
    MISSING_BOX = "missing_box"
    MISSING_PROMPT = "missing_prompt"
    OBJECTS_WITH_PROMPTS = "objects_with_prompts"
    OBJECTS_NOT_ALLOWED = "objects_not_allowed"
    POINT_LABELS_MISMATCH = "point_labels_mismatch"
    INVALID_POINT_LABEL = "invalid_point_label"
    INVALID_COORDINATES = "invalid_coordinates"
    COORDINATES_OUT_OF_BOUNDS = "coordinates_out_of_bounds"
    INVALID_BOX = "invalid_box"
    POINTS_WITH_MULTIPLE_BOXES = "points_with_multiple_boxes"
    TOO_MANY_PROMPTS = "too_many_prompts"
    INVALID_BATCH = "invalid_batch"
    INVALID_BASE64 = "invalid_base64"
    UNSUPPORTED_IMAGE = "unsupported_image"
    TRUNCATED_IMAGE = "truncated_image"
    CORRUPT_IMAGE = "corrupt_image"
    EMPTY_IMAGE = "empty_image"
    IMAGE_TOO_LARGE = "image_too_large"
    OVER_BUDGET = "over_budget"
    OVER_TIME_BUDGET = "over_time_budget"
    ANSWER_TOO_LARGE = "answer_too_large"
    BODY_TOO_LARGE = "body_too_large"
    HEADERS_TOO_LARGE = "headers_too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    IMAGE_NOT_CACHED = "image_not_cached"
    MASK_NOT_FOUND = "mask_not_found"
    INVALID_VIDEO = "invalid_video"
    VIDEO_TOO_LARGE = "video_too_large"
    VIDEO_NOT_FOUND = "video_not_found"
    SESSION_NOT_FOUND = "session_not_found"
    SESSION_BUSY = "session_busy"
    TOO_MANY_SESSIONS = "too_many_sessions"
    TOO_MANY_OBJECTS = "too_many_objects"
    MODEL_NOT_LOADED = "model_not_loaded"
    MODEL_NOT_FOUND = "model_not_found"
    JOB_NOT_FOUND = "job_not_found"
    EMPTY_JOB = "empty_job"
    TOO_MANY_JOB_ITEMS = "too_many_job_items"
    JOB_QUEUE_FULL = "job_queue_full"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    JOB_ITEM_ABANDONED = "job_item_abandoned"
    INVALID_WEBHOOK_URL = "invalid_webhook_url"
    INVALID_ARCHIVE = "invalid_archive"
    UNSAFE_ARCHIVE = "unsafe_archive"
    ARCHIVE_TOO_LARGE = "archive_too_large"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    NOT_READY = "not_ready"
    MISSING_CREDENTIALS = "missing_credentials"
    MALFORMED_CREDENTIALS = "malformed_credentials"
    INVALID_API_KEY = "invalid_api_key"
    API_KEY_REVOKED = "api_key_revoked"
    API_KEY_EXPIRED = "api_key_expired"
    INVALID_TOKEN = "invalid_token"  # noqa: S105 (an error code, not a secret)
    TOKEN_EXPIRED = "token_expired"  # noqa: S105
    INSUFFICIENT_SCOPE = "insufficient_scope"
    RATE_LIMITED = "rate_limited"
    TOO_MANY_CONCURRENT = "too_many_concurrent"
    INFERENCE_UNAVAILABLE = "inference_unavailable"
    INFERENCE_STARTING = "inference_starting"
    GATEWAY_BUSY = "gateway_busy"
    VIDEO_BUSY = "video_busy"
    INFERENCE_TIMEOUT = "inference_timeout"
    DEPENDENCY_UNAVAILABLE = "dependency_unavailable"
    INTERNAL_ERROR = "internal_error"


@dataclass(frozen=True, slots=True)
class ErrorSpec:
    """The status, title and default hint that belong to one code."""

    status: int
    title: str
    hint: str


CATALOG: dict[ErrorCode, ErrorSpec] = {
    ErrorCode.INVALID_JSON: ErrorSpec(
        400, "Body is not valid JSON", "Send a JSON object; check quoting and trailing commas."
    ),
    ErrorCode.INVALID_REQUEST: ErrorSpec(
        422, "Invalid request", "Fix the fields listed in `errors` and send the request again."
    ),
    ErrorCode.UNKNOWN_FIELD: ErrorSpec(
        422, "Unknown field", "Remove the field or check its spelling against the API reference."
    ),
    ErrorCode.INVALID_MODE: ErrorSpec(422, "Unknown mode", 'Use `mode` "point", "box" or "auto".'),
    ErrorCode.INVALID_MASK_FORMAT: ErrorSpec(
        422, "Unknown mask format", 'Use `mask_format` "bool2d", "rle", "png" or "polygon".'
    ),
    ErrorCode.UNKNOWN_MODEL: ErrorSpec(
        422, "Unknown model", 'Use `model` "tiny", "small", "base-plus" or "large".'
    ),
    ErrorCode.INVALID_PARAMETER: ErrorSpec(
        422, "Parameter out of range", "Keep the parameter inside the range the API lists."
    ),
    ErrorCode.MISSING_IMAGE: ErrorSpec(
        422,
        "No image",
        "Send `image` (base64, or a multipart file part), `image_url`, or the `image_id` of an "
        "earlier response.",
    ),
    ErrorCode.IMAGE_AND_IMAGE_ID: ErrorSpec(
        422,
        "More than one image",
        "Send one of `image` (or a multipart `image` file), `image_url` or `image_id`.",
    ),
    ErrorCode.INVALID_IMAGE_URL: ErrorSpec(
        422,
        "Malformed image_url",
        "Send an absolute https:// URL of at most 2048 characters, without user:password@.",
    ),
    ErrorCode.IMAGE_URL_FORBIDDEN: ErrorSpec(
        422,
        "Image URL not allowed",
        "The gateway fetches public https URLs only (no private, loopback, link-local or "
        "metadata addresses, before or after redirects); upload the file instead.",
    ),
    ErrorCode.IMAGE_URL_UNREACHABLE: ErrorSpec(
        422,
        "Image URL could not be fetched",
        "Check that the URL answers 200 with the image within the time limit, or upload the "
        "file instead (multipart `image` part, or base64 `image`).",
    ),
    ErrorCode.INVALID_IMAGE_ID: ErrorSpec(
        422, "Malformed image_id", "Use the `image_id` exactly as an earlier response returned it."
    ),
    ErrorCode.INVALID_MASK_ID: ErrorSpec(
        422, "Malformed mask_id", "Send `refine` exactly as an earlier answer's `mask_id`."
    ),
    ErrorCode.REFINE_NOT_ALLOWED: ErrorSpec(
        422,
        "Nothing to refine",
        "`refine` corrects one mask: use it in point or box mode with at most one box.",
    ),
    ErrorCode.TOO_COMPLEX_FOR_POLYGONS: ErrorSpec(
        422,
        "Masks too complex for polygons",
        'Ask for `"mask_format": "rle"` (or `png`): noisy masks have hundreds of thousands of '
        "edges, which RLE carries compactly.",
    ),
    ErrorCode.MISSING_POINTS: ErrorSpec(
        422, "No points", "Point mode needs `point_coords`, e.g. [[100, 150]]."
    ),
    ErrorCode.MISSING_BOX: ErrorSpec(
        422, "No box", "Box mode needs `box_coords` as [x_min, y_min, x_max, y_max]."
    ),
    ErrorCode.MISSING_PROMPT: ErrorSpec(
        422,
        "An object without prompts",
        "Give each entry of `objects` `point_coords` and/or `box_coords`, e.g. "
        '{"point_coords": [[100, 150]]}.',
    ),
    ErrorCode.OBJECTS_WITH_PROMPTS: ErrorSpec(
        422,
        "Objects and top-level prompts",
        "Put every prompt inside `objects` (one entry per object), or send no `objects`.",
    ),
    ErrorCode.OBJECTS_NOT_ALLOWED: ErrorSpec(
        422,
        "Objects in automatic mode",
        'Automatic mode segments everything: drop `objects`, or use `mode` "point" or "box".',
    ),
    ErrorCode.POINT_LABELS_MISMATCH: ErrorSpec(
        422,
        "Points and labels differ in count",
        "Send one label per point, or omit `point_labels` to mark every point foreground.",
    ),
    ErrorCode.INVALID_POINT_LABEL: ErrorSpec(
        422, "Invalid point label", "Use 1 for a foreground point and 0 for a background point."
    ),
    ErrorCode.INVALID_COORDINATES: ErrorSpec(
        422,
        "Invalid coordinates",
        "Coordinates are finite, non-negative pixel positions [x, y] in the original image.",
    ),
    ErrorCode.COORDINATES_OUT_OF_BOUNDS: ErrorSpec(
        422,
        "Coordinates outside the image",
        "Keep 0 <= x <= width and 0 <= y <= height; `image_shape` is [height, width].",
    ),
    ErrorCode.INVALID_BOX: ErrorSpec(
        422,
        "Invalid box",
        "A box is [x_min, y_min, x_max, y_max] with x_max > x_min and y_max > y_min.",
    ),
    ErrorCode.POINTS_WITH_MULTIPLE_BOXES: ErrorSpec(
        422,
        "Points with several boxes",
        "Points combine with one box; for several objects send `objects`, one entry each.",
    ),
    ErrorCode.TOO_MANY_PROMPTS: ErrorSpec(
        422, "Too many prompts", "Split the prompts over several requests or a batch."
    ),
    ErrorCode.INVALID_BATCH: ErrorSpec(
        422, "Invalid batch", 'Send {"requests": [...]} with 1 to the allowed number of items.'
    ),
    ErrorCode.INVALID_BASE64: ErrorSpec(
        422,
        "Image is not valid base64",
        "Base64-encode the file's bytes (standard alphabet, padded); a data: URL prefix is fine.",
    ),
    ErrorCode.UNSUPPORTED_IMAGE: ErrorSpec(
        422, "Not a supported image", "Send a PNG, JPEG, WebP, BMP, TIFF or GIF file."
    ),
    ErrorCode.TRUNCATED_IMAGE: ErrorSpec(
        422, "Image file is truncated", "The file ends early; upload the complete file again."
    ),
    ErrorCode.CORRUPT_IMAGE: ErrorSpec(
        422, "Image file is corrupt", "Re-export the image from an editor and send it again."
    ),
    ErrorCode.EMPTY_IMAGE: ErrorSpec(
        422, "Image has no pixels", "Send an image at least 1x1 pixels in size."
    ),
    ErrorCode.OVER_BUDGET: ErrorSpec(
        422,
        "Over the memory budget",
        "Send fewer boxes, or a smaller image: even one prompt at a time would not fit.",
    ),
    ErrorCode.ANSWER_TOO_LARGE: ErrorSpec(
        422,
        "Answer too large",
        'Ask for `mask_format: "rle"` (a mask\'s outline, about 100x smaller than bool2d) or '
        '`"png"`, fewer masks (`return_all_masks: false`, fewer boxes), or a smaller image.',
    ),
    ErrorCode.OVER_TIME_BUDGET: ErrorSpec(
        422,
        "Over the time budget",
        "Lower `points_per_side` (the detail names a value that fits) or `crop_n_layers`.",
    ),
    ErrorCode.IMAGE_TOO_LARGE: ErrorSpec(
        413,
        "Image has too many pixels",
        "Downscale the image; SAM2 works at 1024x1024 internally, so little is lost.",
    ),
    ErrorCode.BODY_TOO_LARGE: ErrorSpec(
        413, "Request body too large", "Send a smaller image, or fewer items per batch."
    ),
    ErrorCode.HEADERS_TOO_LARGE: ErrorSpec(
        431,
        "Request headers too large",
        "Send at most 32 KiB of request line and headers: look for a runaway cookie or a "
        "token sent twice.",
    ),
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: ErrorSpec(
        415,
        "Unsupported content type",
        "Send the body as JSON with `Content-Type: application/json` (the segment routes also "
        "take `multipart/form-data`: an `image` file part and a `request` JSON part).",
    ),
    ErrorCode.IMAGE_NOT_CACHED: ErrorSpec(
        404,
        "Image not cached",
        "The embedding for this `image_id` expired or was never made here; send `image` again.",
    ),
    ErrorCode.MASK_NOT_FOUND: ErrorSpec(
        404,
        "Mask not found",
        "Masks are kept with their image's embedding, per API key: send `refine` with the same "
        "image as the answer that gave the `mask_id`, or start over without `refine`.",
    ),
    ErrorCode.INVALID_VIDEO: ErrorSpec(
        422,
        "Invalid video",
        "Send one MP4 or WebM clip as `video`, or JPEG/PNG frames of one size as `frames`, in "
        "order.",
    ),
    ErrorCode.VIDEO_TOO_LARGE: ErrorSpec(
        422,
        "Video too large",
        "Send fewer or smaller frames: cut the clip with `start` and `duration`, or lower `fps`.",
    ),
    ErrorCode.VIDEO_NOT_FOUND: ErrorSpec(
        404,
        "Video not found",
        "Videos are kept per API key for a limited time: upload the clip again with "
        "POST /v1/videos.",
    ),
    ErrorCode.SESSION_NOT_FOUND: ErrorSpec(
        404,
        "Session not found",
        "The session expired, was deleted or its server restarted: create a new session for the "
        "video, send its prompts again (the SDKs do both) and propagate again.",
    ),
    ErrorCode.SESSION_BUSY: ErrorSpec(
        409,
        "Session busy",
        "A propagation is running in this session: wait for its stream to end, or close it, "
        "then send the request again.",
    ),
    ErrorCode.TOO_MANY_SESSIONS: ErrorSpec(
        429,
        "Too many sessions",
        "Delete a session you no longer use (DELETE /v1/sessions/{session_id}) or wait for one "
        "to expire.",
    ),
    ErrorCode.TOO_MANY_OBJECTS: ErrorSpec(
        422,
        "Too many objects",
        "Remove an object you no longer track (DELETE /v1/sessions/{session_id}/objects/"
        "{object_id}) or track it in another session.",
    ),
    ErrorCode.MODEL_NOT_LOADED: ErrorSpec(
        400,
        "Model not served here",
        "Omit `model` to use the served model (see /v1/models), or start the server with it.",
    ),
    ErrorCode.MODEL_NOT_FOUND: ErrorSpec(
        404,
        "No such model here",
        "Ask for the served model's decoder: its name is `serving.name` in GET /v1/models.",
    ),
    ErrorCode.JOB_NOT_FOUND: ErrorSpec(
        404,
        "Job not found",
        "Check the job_id (GET /v1/jobs lists this key's jobs); another key's job is not "
        "visible to this one, and a finished job is deleted after its tier's "
        "`job_retention_days` (GET /v1/usage).",
    ),
    ErrorCode.EMPTY_JOB: ErrorSpec(422, "Empty job", "Send at least one item in `items`."),
    ErrorCode.TOO_MANY_JOB_ITEMS: ErrorSpec(
        422, "Too many items", "Split the images into several jobs of at most the limit each."
    ),
    ErrorCode.JOB_QUEUE_FULL: ErrorSpec(
        429,
        "Too many queued items",
        "Wait for this key's running jobs to finish (GET /v1/jobs), or cancel one, then create "
        "the job again.",
    ),
    ErrorCode.IDEMPOTENCY_KEY_REUSED: ErrorSpec(
        422,
        "Idempotency-Key already used",
        "This key made another job with this Idempotency-Key: send that job's request again "
        "to get it, or use a new Idempotency-Key for a new job.",
    ),
    ErrorCode.JOB_ITEM_ABANDONED: ErrorSpec(
        500,
        "Item abandoned",
        "The item's worker stopped several times while running it (the image may crash it): "
        "check the image, then send it in a new job.",
    ),
    ErrorCode.INVALID_WEBHOOK_URL: ErrorSpec(
        422,
        "Webhook URL not allowed",
        "Send an https URL of a public host (no private, loopback or link-local address, no "
        "user:password@), at most 2048 characters.",
    ),
    ErrorCode.INVALID_ARCHIVE: ErrorSpec(
        422, "Not an archive", "Send a zip or tar file (tar may be gzip, bzip2 or xz compressed)."
    ),
    ErrorCode.UNSAFE_ARCHIVE: ErrorSpec(
        422,
        "Unsafe archive",
        "Pack the images with relative names inside one folder, with no `..`, absolute path, "
        "link or device entry.",
    ),
    ErrorCode.ARCHIVE_TOO_LARGE: ErrorSpec(
        413,
        "Archive too large",
        "Send fewer or smaller images per job (the limits are in the detail), or split the "
        "archive into several jobs.",
    ),
    ErrorCode.NOT_FOUND: ErrorSpec(404, "Not found", "Check the path against the API reference."),
    ErrorCode.METHOD_NOT_ALLOWED: ErrorSpec(
        405, "Method not allowed", "Check the HTTP method against the API reference."
    ),
    ErrorCode.NOT_READY: ErrorSpec(
        503, "Service not ready", "The model is still loading; retry after `Retry-After` seconds."
    ),
    ErrorCode.MISSING_CREDENTIALS: ErrorSpec(
        401,
        "No credentials",
        "Send `Authorization: Bearer <API key or token>` or `X-API-Key: <API key>`.",
    ),
    ErrorCode.MALFORMED_CREDENTIALS: ErrorSpec(
        401,
        "Malformed credentials",
        "An API key looks like sam2_<id>_<secret>_<check>; copy it whole, without spaces.",
    ),
    ErrorCode.INVALID_API_KEY: ErrorSpec(
        401,
        "Invalid API key",
        "Check the key, or create a new one with `sam2-gateway keys create`.",
    ),
    ErrorCode.API_KEY_REVOKED: ErrorSpec(
        401, "API key revoked", "This key was revoked; create a new one."
    ),
    ErrorCode.API_KEY_EXPIRED: ErrorSpec(
        401, "API key expired", "This key has passed its expiry; create a new one."
    ),
    ErrorCode.INVALID_TOKEN: ErrorSpec(
        401, "Invalid token", "Get a fresh token from POST /v1/auth/token with your API key."
    ),
    ErrorCode.TOKEN_EXPIRED: ErrorSpec(
        401, "Token expired", "Tokens live minutes; get a fresh one from POST /v1/auth/token."
    ),
    ErrorCode.INSUFFICIENT_SCOPE: ErrorSpec(
        403, "Missing scope", "Use a key (or token) that carries the scope this route needs."
    ),
    ErrorCode.RATE_LIMITED: ErrorSpec(
        429, "Rate limit exceeded", "Wait `Retry-After` seconds, or ask for a higher rate tier."
    ),
    ErrorCode.TOO_MANY_CONCURRENT: ErrorSpec(
        429, "Too many concurrent requests", "Wait for a running request to finish, then retry."
    ),
    ErrorCode.INFERENCE_UNAVAILABLE: ErrorSpec(
        503, "Inference unavailable", "The model server is unreachable; retry after `Retry-After`."
    ),
    ErrorCode.INFERENCE_STARTING: ErrorSpec(
        503,
        "Inference is starting",
        "A model container is starting (a cold start); retry after `Retry-After` seconds.",
    ),
    ErrorCode.GATEWAY_BUSY: ErrorSpec(
        503,
        "Gateway busy",
        "The gateway is sending many large answers; retry after `Retry-After` seconds, or ask "
        'for `mask_format: "rle"`, which is small.',
    ),
    ErrorCode.VIDEO_BUSY: ErrorSpec(
        503,
        "Video memory full",
        "The sessions open here hold all of this service's video memory; retry after "
        "`Retry-After` seconds, delete a session you no longer use, or cut the clip shorter "
        "(`duration`, `fps`).",
    ),
    ErrorCode.INFERENCE_TIMEOUT: ErrorSpec(
        504,
        "Inference timed out",
        "Retry; for auto mode use fewer `points_per_side` or a smaller image.",
    ),
    ErrorCode.DEPENDENCY_UNAVAILABLE: ErrorSpec(
        503,
        "A dependency is unavailable",
        "The key store or the rate limiter is unreachable; retry after `Retry-After` seconds.",
    ),
    ErrorCode.INTERNAL_ERROR: ErrorSpec(
        500,
        "Internal error",
        "This is a bug on our side; retry, and report the `request_id` if it persists.",
    ),
}
