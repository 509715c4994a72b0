// Types every part of the SDK shares, with no code: what an image may be, and per-call options.

export type ImageInput = Blob | ArrayBuffer | Uint8Array;

export interface RequestOptions {
  /** Abort the call: the connection closes, and the service stops the request's work. */
  signal?: AbortSignal;
}
