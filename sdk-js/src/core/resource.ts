// Resources (`client.videos`, and those that follow) as anthropic-sdk-typescript builds them: a
// resource holds its client and calls only the client's public request primitives.

/** The request primitives a resource calls: Sam2Client's, one retry, timeout and error path. */
export interface Requester {
  /** One call; `body` is sent as JSON, or as it is when it is `FormData`. */
  request<T>(method: string, path: string, body?: unknown, signal?: AbortSignal, headers?: Record<string, string>): Promise<T>;
  /** POST `body` (GET when undefined); the response once it is known to succeed, its body unread (a stream). */
  stream(path: string, body: unknown, signal?: AbortSignal): Promise<Response>;
  /** GET a file. */
  download(path: string, signal?: AbortSignal): Promise<Blob>;
}

export abstract class APIResource {
  constructor(protected readonly client: Requester) {}
}
