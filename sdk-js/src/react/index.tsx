// React bindings, in their own subpath (`@sam2/sdk/react`) so that the core needs no React.
import { useCallback, useEffect, useRef, useState } from "react";
import type { AutoSegmentation, ImageInput, PromptOptions, Sam2Client, Segmentation, SegmentRequest } from "../client.js";
import { maskToRgba } from "../internal/rle.js";

export interface SegmenterState {
  result: Segmentation | AutoSegmentation | undefined;
  loading: boolean;
  error: Error | undefined;
  /** Points and/or a box on the current image; the embedding is reused after the first. */
  segment: (prompt: PromptOptions) => Promise<Segmentation | undefined>;
  /** Everything in the current image. */
  segmentAuto: (knobs?: Partial<SegmentRequest>) => Promise<AutoSegmentation | undefined>;
  reset: () => void;
}

/** Segment one image with a client; a new image clears the result. */
export function useSegmenter(client: Sam2Client, image: ImageInput | undefined): SegmenterState {
  const [result, setResult] = useState<Segmentation | AutoSegmentation>();
  const [loading, setLoading] = useState(false);
  const [error, setError] = useState<Error>();
  const latest = useRef(0);

  useEffect(() => {
    setResult(undefined);
    setError(undefined);
  }, [image]);

  const run = useCallback(
    async <T extends Segmentation | AutoSegmentation>(call: (img: ImageInput) => Promise<T>): Promise<T | undefined> => {
      if (image === undefined) return undefined;
      const ticket = ++latest.current; // a later call wins over an earlier slow one
      setLoading(true);
      setError(undefined);
      try {
        const answer = await call(image);
        if (ticket === latest.current) setResult(answer);
        return answer;
      } catch (caught) {
        if (ticket === latest.current) setError(caught instanceof Error ? caught : new Error(String(caught)));
        return undefined;
      } finally {
        if (ticket === latest.current) setLoading(false);
      }
    },
    [image],
  );

  return {
    result,
    loading,
    error,
    segment: useCallback((prompt: PromptOptions) => run((img) => client.segment(img, prompt)), [client, run]),
    segmentAuto: useCallback((knobs?: Partial<SegmentRequest>) => run((img) => client.segmentAuto(img, knobs ?? {})), [client, run]),
    reset: useCallback(() => setResult(undefined), []),
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
  label?: string;
}

/** A canvas the size of the image with the mask painted in; lay it over the <img>. */
export function MaskOverlay({ mask, width, height, color = DEFAULT_COLOR, className, label = "segmentation mask" }: MaskOverlayProps) {
  const canvas = useRef<HTMLCanvasElement>(null);
  useEffect(() => {
    const context = canvas.current?.getContext("2d");
    if (!context) return;
    context.clearRect(0, 0, width, height);
    context.putImageData(new ImageData(maskToRgba(mask, color), width, height), 0, 0);
  }, [mask, width, height, color]);
  return <canvas ref={canvas} width={width} height={height} className={className} role="img" aria-label={label} style={{ pointerEvents: "none" }} />;
}
