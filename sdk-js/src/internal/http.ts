// What every request shares, with no I/O: which statuses are retried and how long to wait, the
// fetch options of a body, and a streamed answer's lines.

export const RETRY_STATUSES = new Set([408, 409, 429, 500, 502, 503, 504]);
const INITIAL_RETRY_DELAY_MS = 500;
const MAX_RETRY_DELAY_MS = 8000;

/** Retry-After when the service gives one, else exponential backoff with jitter. */
export function retryDelay(attempt: number, retryAfter: string | null): number {
  if (retryAfter !== null && !Number.isNaN(Number(retryAfter))) return Math.min(Math.max(Number(retryAfter), 0), 60) * 1000;
  const delay = Math.min(INITIAL_RETRY_DELAY_MS * 2 ** attempt, MAX_RETRY_DELAY_MS);
  return delay * (1 - 0.25 * Math.random());
}

/** The method, headers and body of a call: JSON, or `FormData` as it is (fetch writes its
 * multipart content type). */
export function requestInit(method: string, authorization: string, body: unknown, extra?: Record<string, string>): RequestInit {
  const form = body instanceof FormData;
  const init: RequestInit = {
    method,
    headers: { ...extra, ...(form || body === undefined ? { authorization } : { "content-type": "application/json", authorization }) },
  };
  if (body !== undefined) init.body = form ? body : JSON.stringify(body);
  return init;
}

/** A response body's lines, as they come; the reader is cancelled (the connection closed) when
 * the consumer stops early. */
export async function* lines(response: Response): AsyncGenerator<string, void, undefined> {
  if (!response.body) return;
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffered = "";
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      buffered += decoder.decode(value, { stream: true });
      let end = buffered.indexOf("\n");
      while (end >= 0) {
        const line = buffered.slice(0, end).trim();
        buffered = buffered.slice(end + 1);
        if (line) yield line;
        end = buffered.indexOf("\n");
      }
    }
    if (buffered.trim()) yield buffered.trim();
  } finally {
    await reader.cancel().catch(() => undefined);
  }
}
