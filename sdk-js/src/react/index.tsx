// React bindings, in their own subpath (`@sam2/sdk/react`) so that the core needs no React.
import { type CSSProperties, useCallback, useEffect, useRef, useState } from "react";
import type { AutoOptions, AutoSegmentation, ImageInput, PromptOptions, Sam2Client, Segmentation } from "../client.js";
import { Sam2Error } from "../core/errors.js";
import { maskToRgba } from "../core/masks.js";
import { LocalSession, type Backend, type LocalOptions, type Progress } from "../local/index.js";
import type { PropagateOptions, TrackedFrame, UploadOptions, VideoInfo, VideoSession } from "../video.js";

export interface SegmenterState {
  result: Segmentation | AutoSegmentation | undefined;
  loading: boolean;
  error: Error | undefined;
  /** Points and/or a box on the current image; the embedding is reused after the first.
   * Like react-query's `mutateAsync`, the promise rejects on error (and `error` is set too);
   * with no image it rejects with a Sam2Error. */
  segment: (prompt: PromptOptions) => Promise<Segmentation>;
  /** Everything in the current image. */
  segmentAuto: (knobs?: AutoOptions) => Promise<AutoSegmentation>;
  /** Stop the call in flight (the server stops its work too); its promise rejects with
   * APIUserAbortError and the last result stays. A new call cancels the one before it. */
  cancel: () => void;
  /** Clear the result and the error (cancelling any call in flight). */
  reset: () => void;
  /** Where clicks are decoded, and how the local decoder is getting on. */
  decoder: DecoderState;
  /** The last answer's origin and its time as the page saw it (the request, or the local run). */
  last: { where: "local" | "server"; ms: number } | undefined;
}

export interface SegmenterOptions {
  /** "local": download the image's embedding and the decoder once, then decode clicks here
   * (@sam2/sdk/local, onnxruntime-web); the server answers what the local decoder cannot
   * (automatic mode, several objects, a rendered overlay) and every click until it is ready,
   * or if it fails (`decoder.reason` says why). Default "server". */
  decode?: "server" | "local";
  /** The local session's options: dtype, backends, threads, `ort` (the onnxruntime-web module). */
  local?: Omit<LocalOptions, "onProgress" | "signal">;
}

export interface DecoderState {
  mode: "server" | "local";
  /** off (server mode), loading (the downloads), ready, or failed (clicks go to the server). */
  status: "off" | "loading" | "ready" | "failed";
  progress: Progress | undefined;
  /** Why clicks go to the server although local decoding was asked for. */
  reason: string | undefined;
  backend: Backend | undefined;
}

const OFF: DecoderState = { mode: "server", status: "off", progress: undefined, reason: undefined, backend: undefined };

/** Segment one image with a client; a new image clears the result. With `{ decode: "local" }`
 * clicks after the first downloads are decoded on this device, with no request. */
export function useSegmenter(client: Sam2Client, image: ImageInput | undefined, options: SegmenterOptions = {}): SegmenterState {
  const [result, setResult] = useState<Segmentation | AutoSegmentation>();
  const [loading, setLoading] = useState(false);
  const [error, setError] = useState<Error>();
  const [decoder, setDecoder] = useState<DecoderState>(OFF);
  const [last, setLast] = useState<SegmenterState["last"]>();
  const latest = useRef(0);
  const inFlight = useRef<AbortController | undefined>(undefined);
  const local = useRef<LocalSession | undefined>(undefined);
  const decode = options.decode ?? "server";
  const localOptions = useRef(options.local);
  localOptions.current = options.local;

  // The local session of this image: started when the image (or the mode) changes, closed
  // when it does again; until it is ready, clicks go to the server.
  useEffect(() => {
    local.current = undefined;
    if (decode !== "local" || image === undefined) {
      setDecoder(decode === "local" ? { ...OFF, mode: "local", status: "loading", reason: "no image yet" } : OFF);
      return;
    }
    const controller = new AbortController();
    let session: LocalSession | undefined;
    setDecoder({ ...OFF, mode: "local", status: "loading", reason: "the decoder is still loading" });
    LocalSession.start(client, image, {
      ...localOptions.current,
      signal: controller.signal,
      onProgress: (progress) => setDecoder((d) => ({ ...d, progress })),
    }).then(
      (started) => {
        session = started;
        if (controller.signal.aborted) return void started.close();
        local.current = started;
        setDecoder((d) => ({ ...d, status: "ready", reason: undefined, backend: started.backend }));
      },
      (failure: unknown) => {
        if (controller.signal.aborted) return;
        setDecoder((d) => ({ ...d, status: "failed", reason: `the local decoder failed: ${failure instanceof Error ? failure.message : String(failure)}` }));
      },
    );
    return () => {
      controller.abort();
      void session?.close();
    };
  }, [client, image, decode]);

  // Stops the call in flight; what it answers (or throws) no longer counts.
  const cancel = useCallback(() => {
    latest.current += 1;
    inFlight.current?.abort();
    inFlight.current = undefined;
    setLoading(false);
  }, []);

  useEffect(() => {
    cancel();
    setResult(undefined);
    setError(undefined);
  }, [image, cancel]);

  const run = useCallback(
    async <T extends Segmentation | AutoSegmentation>(call: (img: ImageInput, signal: AbortSignal) => Promise<T>): Promise<T> => {
      if (image === undefined) throw new Sam2Error("no image to segment yet");
      // A later call wins over an earlier slow one, which is cancelled rather than left to
      // hold the server (a click during automatic mode is answered without waiting for it).
      inFlight.current?.abort();
      const controller = new AbortController();
      inFlight.current = controller;
      const ticket = ++latest.current;
      setLoading(true);
      setError(undefined);
      const started = performance.now();
      try {
        const answer = await call(image, controller.signal);
        if (ticket === latest.current) {
          setResult(answer);
          setLast({ where: answer.warnings.includes("decoded locally") ? "local" : "server", ms: performance.now() - started });
        }
        return answer;
      } catch (caught) {
        const failure = caught instanceof Error ? caught : new Error(String(caught));
        if (ticket === latest.current) setError(failure);
        throw failure;
      } finally {
        if (inFlight.current === controller) inFlight.current = undefined;
        if (ticket === latest.current) setLoading(false);
      }
    },
    [image],
  );

  return {
    result,
    loading,
    error,
    segment: useCallback(
      (prompt: PromptOptions) => {
        const here = local.current;
        if (here && decodesLocally(prompt, here)) return run(() => here.segment(prompt));
        return run((img, signal) => client.segment(img, { ...prompt, signal: either(prompt.signal, signal) }));
      },
      [client, run],
    ),
    segmentAuto: useCallback((knobs?: AutoOptions) => run((img, signal) => client.segmentAuto(img, knobs ?? {}, { signal })), [client, run]),
    cancel,
    reset: useCallback(() => {
      cancel();
      setResult(undefined);
      setError(undefined);
    }, [cancel]),
    decoder,
    last,
  };
}

/** Whether a local session answers `prompt`: points and/or one box, refining a mask it made. */
function decodesLocally(prompt: PromptOptions, session: LocalSession): boolean {
  if (prompt.objects || prompt.boxes || prompt.render) return false;
  return !prompt.refine || session.has(prompt.refine);
}

/** Aborts when the caller's signal does or the hook's own does. */
function either(theirs: AbortSignal | undefined, ours: AbortSignal): AbortSignal {
  return theirs ? AbortSignal.any([theirs, ours]) : ours;
}

export interface VideoTrackerState {
  video: VideoInfo | undefined;
  session: VideoSession | undefined;
  /** Every object's latest mask per frame: a prompt's answer, then each propagated frame. */
  frames: ReadonlyMap<number, TrackedFrame>;
  /** Frames tracked in the running (or last) propagation, and how many it may reach. */
  progress: { done: number; total: number };
  loading: boolean;
  propagating: boolean;
  error: Error | undefined;
  /** Times the server lost the session and it was recreated (its prompts sent again). */
  recreated: number;
  /** Upload a clip (or frames) and open a session on it; clears what was tracked. */
  load: (clip: UploadOptions) => Promise<VideoSession>;
  addPoints: (frameIndex: number, objectId: number, points: number[][], labels?: number[]) => Promise<TrackedFrame>;
  addBox: (frameIndex: number, objectId: number, box: number[]) => Promise<TrackedFrame>;
  /** Track every object through the clip, updating `frames` and `progress` as frames come. */
  propagate: (options?: Omit<PropagateOptions, "signal">) => Promise<void>;
  /** Stop a running propagation (the server stops tracking). */
  cancel: () => void;
}

/** Track objects through a clip with a client: upload, prompt on any frame, propagate with
 * progress. Like `useSegmenter`, calls reject on error and `error` is set too. */
export function useVideoTracker(client: Sam2Client): VideoTrackerState {
  const [video, setVideo] = useState<VideoInfo>();
  const [session, setSession] = useState<VideoSession>();
  const [frames, setFrames] = useState<ReadonlyMap<number, TrackedFrame>>(new Map());
  const [progress, setProgress] = useState({ done: 0, total: 0 });
  const [loading, setLoading] = useState(false);
  const [propagating, setPropagating] = useState(false);
  const [error, setError] = useState<Error>();
  const [recreated, setRecreated] = useState(0);
  const running = useRef<AbortController | undefined>(undefined);

  const track = useCallback(async <T,>(call: () => Promise<T>): Promise<T> => {
    setLoading(true);
    setError(undefined);
    try {
      return await call();
    } catch (caught) {
      const failure = caught instanceof Error ? caught : new Error(String(caught));
      setError(failure);
      throw failure;
    } finally {
      setLoading(false);
    }
  }, []);

  const keep = useCallback((frame: TrackedFrame) => {
    setFrames((known) => new Map(known).set(frame.frameIndex, frame));
  }, []);

  const need = useCallback((): VideoSession => {
    if (!session) throw new Sam2Error("no video loaded yet");
    return session;
  }, [session]);

  return {
    video,
    session,
    frames,
    progress,
    loading,
    propagating,
    error,
    recreated,
    load: useCallback(
      (clip: UploadOptions) =>
        track(async () => {
          running.current?.abort();
          const info = await client.videos.upload(clip);
          const opened = await client.videos.session(info, { onRecreated: (s) => setRecreated(s.recreated) });
          setVideo(info);
          setSession(opened);
          setFrames(new Map());
          setProgress({ done: 0, total: info.num_frames });
          setRecreated(0);
          return opened;
        }),
      [client, track],
    ),
    addPoints: useCallback(
      (frameIndex: number, objectId: number, points: number[][], labels?: number[]) =>
        track(async () => {
          const frame = await need().addPoints(frameIndex, objectId, points, labels);
          keep(frame);
          return frame;
        }),
      [need, keep, track],
    ),
    addBox: useCallback(
      (frameIndex: number, objectId: number, box: number[]) =>
        track(async () => {
          const frame = await need().addBox(frameIndex, objectId, box);
          keep(frame);
          return frame;
        }),
      [need, keep, track],
    ),
    propagate: useCallback(
      async (options: Omit<PropagateOptions, "signal"> = {}) => {
        const target = need();
        const controller = new AbortController();
        running.current?.abort();
        running.current = controller;
        // Frames answered with their final masks: with `both`, every frame of the clip once.
        setProgress({ done: 0, total: target.video.num_frames });
        setPropagating(true);
        setError(undefined);
        try {
          let done = 0;
          for await (const frame of target.propagate({ ...options, signal: controller.signal })) {
            keep(frame);
            if (!frame.final) continue; // the backward pass tracks this frame again
            done += 1;
            setProgress((p) => ({ ...p, done }));
          }
          setProgress({ done, total: done });
        } catch (caught) {
          if (controller.signal.aborted) return; // cancelled: not an error
          const failure = caught instanceof Error ? caught : new Error(String(caught));
          setError(failure);
          throw failure;
        } finally {
          if (running.current === controller) running.current = undefined;
          setPropagating(false);
        }
      },
      [need, keep],
    ),
    cancel: useCallback(() => running.current?.abort(), []),
  };
}

const DEFAULT_COLOR: [number, number, number, number] = [30, 144, 255, 128];

export interface MaskOverlayProps {
  mask: Uint8Array;
  width: number;
  height: number;
  /** RGBA, alpha 0-255; translucent blue by default. */
  color?: [number, number, number, number];
  className?: string;
  /** Added to (and overriding) the default style, which lays the canvas over the whole of its
   * nearest positioned ancestor: wrap the <img> and the overlay in a `position: relative`
   * element the size of the image. */
  style?: CSSProperties;
  label?: string;
}

const OVER_PARENT: CSSProperties = {
  position: "absolute",
  inset: 0,
  width: "100%",
  height: "100%",
  pointerEvents: "none",
};

/** A canvas with the image's pixel size and the mask painted in, laid over the whole of its
 * positioned parent (the element wrapping the <img>). */
export function MaskOverlay({ mask, width, height, color = DEFAULT_COLOR, className, style, label = "segmentation mask" }: MaskOverlayProps) {
  const canvas = useRef<HTMLCanvasElement>(null);
  useEffect(() => {
    const context = canvas.current?.getContext("2d");
    if (!context) return;
    context.clearRect(0, 0, width, height);
    context.putImageData(new ImageData(maskToRgba(mask, color), width, height), 0, 0);
  }, [mask, width, height, color]);
  return <canvas ref={canvas} width={width} height={height} className={className} role="img" aria-label={label} style={{ ...OVER_PARENT, ...style }} />;
}
