// The SDK's errors, with the same names as the Python SDK (and anthropic-sdk-typescript):
// Sam2Error > APIError > APIConnectionError > APITimeoutError, and APIStatusError with one
// subclass per status. `code` is the service's stable error code; `hint` says what to do.

export interface Problem {
  type?: string;
  title?: string;
  status?: number;
  detail?: string;
  code?: string;
  hint?: string;
  request_id?: string;
}

export class Sam2Error extends Error {
  override name = "Sam2Error";
}

/** A download for local decoding (an embedding, the decoder) is damaged or not what was asked
 * for: nothing was decoded from it. Starting the local session again downloads it anew. */
export class LocalDecodeError extends Sam2Error {
  override name = "LocalDecodeError";
}

export class APIError extends Sam2Error {
  override name = "APIError";
}

export class APIConnectionError extends APIError {
  override name = "APIConnectionError";
}

export class APITimeoutError extends APIConnectionError {
  override name = "APITimeoutError";
}

/** The caller aborted the call (its AbortSignal); never retried. */
export class APIUserAbortError extends APIError {
  override name = "APIUserAbortError";
}

export class APIStatusError extends APIError {
  override name = "APIStatusError";
  readonly status: number;
  readonly code: string;
  readonly hint: string | undefined;
  readonly requestId: string | undefined;
  readonly problem: Problem;

  constructor(status: number, problem: Problem, requestId?: string) {
    super(`${status} ${problem.code ?? "error"}: ${problem.detail ?? ""}`);
    this.status = status;
    this.problem = problem;
    this.code = problem.code ?? "";
    this.hint = problem.hint;
    this.requestId = problem.request_id ?? requestId;
  }
}

export class BadRequestError extends APIStatusError {
  override name = "BadRequestError";
}
export class AuthenticationError extends APIStatusError {
  override name = "AuthenticationError";
}
export class PermissionDeniedError extends APIStatusError {
  override name = "PermissionDeniedError";
}
export class NotFoundError extends APIStatusError {
  override name = "NotFoundError";
}
export class ImageNotCachedError extends NotFoundError {
  override name = "ImageNotCachedError";
}
/** The video session expired, was deleted, or its server restarted; a VideoSession recreates it
 * and replays its prompts by itself. */
export class SessionNotFoundError extends NotFoundError {
  override name = "SessionNotFoundError";
}
/** The clip is not stored (any more) for this key; a VideoSession uploads it again. */
export class VideoNotFoundError extends NotFoundError {
  override name = "VideoNotFoundError";
}
export class ConflictError extends APIStatusError {
  override name = "ConflictError";
}
export class PayloadTooLargeError extends APIStatusError {
  override name = "PayloadTooLargeError";
}
export class UnprocessableEntityError extends APIStatusError {
  override name = "UnprocessableEntityError";
}
export class RateLimitError extends APIStatusError {
  override name = "RateLimitError";
}
export class InternalServerError extends APIStatusError {
  override name = "InternalServerError";
}

const BY_STATUS: Record<number, typeof APIStatusError> = {
  400: BadRequestError,
  401: AuthenticationError,
  403: PermissionDeniedError,
  404: NotFoundError,
  409: ConflictError,
  413: PayloadTooLargeError,
  422: UnprocessableEntityError,
  429: RateLimitError,
};

export function errorFor(status: number, problem: Problem, requestId?: string): APIStatusError {
  if (problem.code === "image_not_cached") return new ImageNotCachedError(status, problem, requestId);
  if (problem.code === "session_not_found") return new SessionNotFoundError(status, problem, requestId);
  if (problem.code === "video_not_found") return new VideoNotFoundError(status, problem, requestId);
  if (status >= 500) return new InternalServerError(status, problem, requestId);
  const ErrorClass = BY_STATUS[status] ?? APIStatusError;
  return new ErrorClass(status, problem, requestId);
}
