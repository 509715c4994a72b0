// Every failure the page can meet, in words a user can act on: what happened, then what to do.
import { APIConnectionError, APIStatusError, APITimeoutError, APIUserAbortError } from "@sam2/sdk";

const LEADS: Record<number, string> = {
  400: "The service could not read this request.",
  401: "The API key or token was not accepted.",
  403: "This key is not allowed to do that.",
  404: "The service no longer has this.",
  409: "The service is busy with this already.",
  413: "Too large for this service.",
  415: "The service cannot read this kind of file.",
  422: "The service could not use this input.",
  429: "Too many requests, or too much work at once, for this key.",
};

/** The message for a failure; undefined for none, or a call the user cancelled (not an error). */
export function describe(failure: unknown): string | undefined {
  if (failure === undefined || failure instanceof APIUserAbortError) return undefined;
  if (failure instanceof APITimeoutError) {
    return "The service took too long to answer. It may be starting (a cold GPU takes about a minute) or busy: try again.";
  }
  if (failure instanceof APIConnectionError) {
    return "The service cannot be reached. Check your connection, or that the local stack is running (scripts/dev), then try again.";
  }
  if (failure instanceof APIStatusError) {
    if (failure.status >= 500) {
      // The API's hint here speaks to programs (Retry-After); a person gets what to do.
      return said("The model service is unavailable right now (starting, restarting or down).", failure.problem.detail, "Try again in a moment; on the local stack, check that scripts/dev is still running.");
    }
    const lead = LEADS[failure.status] ?? `The service refused this (${failure.status}).`;
    return said(lead, failure.problem.detail, failure.hint);
  }
  return sentence(failure instanceof Error ? failure.message : String(failure));
}

/** A picked file the browser itself cannot open as a picture. */
export function unreadable(name: string): string {
  return `“${name}” is not an image this browser can open: the file may be damaged, or not a picture at all. Pick a PNG, JPEG or WebP.`;
}

function said(...parts: (string | undefined)[]): string {
  return parts.filter((part): part is string => Boolean(part)).map(sentence).join(" ");
}

function sentence(text: string): string {
  const trimmed = text.trim();
  const capital = trimmed.charAt(0).toUpperCase() + trimmed.slice(1);
  return /[.!?:]$/.test(capital) ? capital : `${capital}.`;
}
