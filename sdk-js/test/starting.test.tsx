// @vitest-environment jsdom
// The playground's cold-start notice: /readyz (the HTTP boundary, a scripted fetch) says
// `inference_starting` while a request waits, and the notice names the start's length.
import { act } from "react";
import { createRoot } from "react-dom/client";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { useColdStart } from "../playground/starting.js";

(globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }).IS_REACT_ACT_ENVIRONMENT = true;

const starting = () =>
  new Response(JSON.stringify({ code: "inference_starting", detail: "starting" }), { status: 503, headers: { "retry-after": "45" } });
const ready = () => Response.json({ state: "ready" });

describe("useColdStart", () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it("says how long a start takes while one runs, and nothing once inference is ready", async () => {
    const answers = [starting, starting, ready];
    const asked: string[] = [];
    const fetchImpl = (async (url: string) => {
      asked.push(url);
      return (answers.shift() ?? ready)();
    }) as typeof fetch;
    const seen: Array<number | undefined> = [];
    function Probe({ waiting }: { waiting: boolean }) {
      seen.push(useColdStart(waiting, fetchImpl));
      return null;
    }
    const root = createRoot(document.createElement("div"));
    await act(async () => root.render(<Probe waiting={true} />));
    await act(async () => void (await vi.advanceTimersByTimeAsync(1000)));
    expect(asked).toEqual([]); // a warm server answers before anyone looks
    await act(async () => void (await vi.advanceTimersByTimeAsync(600)));
    expect(seen.at(-1)).toBe(45);
    await act(async () => void (await vi.advanceTimersByTimeAsync(6000)));
    expect(asked).toEqual(["/readyz", "/readyz", "/readyz"]);
    expect(seen.at(-1)).toBeUndefined(); // ready: the notice goes
    await act(async () => root.render(<Probe waiting={false} />));
    await act(async () => void (await vi.advanceTimersByTimeAsync(10_000)));
    expect(asked).toHaveLength(3); // nothing asked once the request is answered
    root.unmount();
  });
});
