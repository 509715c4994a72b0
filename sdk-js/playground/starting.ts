// While a request waits, whether the gateway is holding it for a cold start of the GPU
// service: its /readyz then answers 503 `inference_starting`, with how long a start takes as
// Retry-After.
import { useEffect, useState } from "react";

const FIRST_LOOK_MS = 1500; // a click on a warm server is answered before this
const LOOK_EVERY_MS = 3000;

/** Seconds a cold start takes, while one runs and `waiting` is true; else undefined. */
export function useColdStart(waiting: boolean, fetchImpl: typeof fetch = fetch): number | undefined {
  const [seconds, setSeconds] = useState<number>();
  useEffect(() => {
    setSeconds(undefined);
    if (!waiting) return;
    let stopped = false;
    let timer: ReturnType<typeof setTimeout>;
    const look = async () => {
      try {
        const answer = await fetchImpl("/readyz");
        const body = answer.status === 503 ? ((await answer.json()) as { code?: string }) : {};
        if (stopped) return;
        setSeconds(body.code === "inference_starting" ? Number(answer.headers.get("retry-after") ?? 60) : undefined);
      } catch {
        // the request itself reports what went wrong
      }
      if (!stopped) timer = setTimeout(() => void look(), LOOK_EVERY_MS);
    };
    timer = setTimeout(() => void look(), FIRST_LOOK_MS);
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, [waiting, fetchImpl]);
  return seconds;
}
