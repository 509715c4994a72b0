// The playground's video view: load a clip (MP4/WebM, or frames), click an object on any frame
// (left: foreground; right or shift: background; the number keys pick the object), propagate
// with a progress bar, scrub the frames with every object's mask drawn, and export the masks of
// every frame as COCO RLE JSON. Built on @sam2/sdk's video sessions and useVideoTracker.
import { useEffect, useRef, useState } from "react";
import type { Sam2Client } from "@sam2/sdk";
import { useVideoTracker } from "@sam2/sdk/react";
import { COLOURS } from "./colours.js";
import { describe } from "./errors.js";
import { annotation, save } from "./exports.js";
import { fit, markerRadius, paintMasks, paintPoint, type Point } from "./paint.js";

export function VideoView({ client }: { client: Sam2Client }) {
  const tracker = useVideoTracker(client);
  const { video, session, frames, progress, loading, propagating, error } = tracker;
  const [index, setIndex] = useState(0);
  const [objectId, setObjectId] = useState(1);
  // Each (frame, object)'s points: a prompt replaces the object's earlier ones on that frame.
  const [points, setPoints] = useState<Map<string, Point[]>>(new Map());
  const [picture, setPicture] = useState<string>();
  const canvas = useRef<HTMLCanvasElement>(null);
  const settle = (call: Promise<unknown>) => void call.catch(() => undefined);

  const load = (files: FileList | null) => {
    if (!files?.length) return;
    const list = Array.from(files);
    const clip = list.length === 1 && list[0]!.type.startsWith("video/") ? { video: list[0]! } : { frames: list.sort((a, b) => a.name.localeCompare(b.name)) };
    setIndex(0);
    setPoints(new Map());
    settle(tracker.load(clip));
  };

  useEffect(() => {
    if (!video) return;
    let url: string | undefined;
    let stale = false;
    void client.videos.frame(video.video_id, index).then((blob) => {
      if (stale) return;
      url = URL.createObjectURL(blob);
      setPicture(url);
    });
    return () => {
      stale = true;
      if (url) URL.revokeObjectURL(url);
    };
  }, [client, video, index]);

  useEffect(() => {
    const context = canvas.current?.getContext("2d");
    if (!context || !video) return;
    const layers = (frames.get(index)?.objects ?? []).map((tracked) => ({ mask: tracked.mask, colour: tracked.objectId - 1 + COLOURS.length }));
    paintMasks(context, video.width, video.height, layers);
    const radius = markerRadius(canvas.current!);
    for (const [key, list] of points) {
      if (Number(key.split(":")[0]) === index) list.forEach((point) => paintPoint(context, point, radius));
    }
  }, [frames, index, video, points]);

  useEffect(() => {
    const onKey = (event: KeyboardEvent) => {
      if (event.target instanceof HTMLInputElement) return;
      if (/^[1-8]$/.test(event.key)) setObjectId(Number(event.key));
      if (event.key === "ArrowRight" && video) setIndex((i) => Math.min(video.num_frames - 1, i + 1));
      if (event.key === "ArrowLeft") setIndex((i) => Math.max(0, i - 1));
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  });

  const click = (event: React.PointerEvent<HTMLCanvasElement>) => {
    if (!video) return;
    const rect = event.currentTarget.getBoundingClientRect();
    const scale = video.width / rect.width;
    const point: Point = {
      x: Math.round((event.clientX - rect.left) * scale),
      y: Math.round((event.clientY - rect.top) * scale),
      label: event.button === 2 || event.shiftKey ? 0 : 1,
    };
    const key = `${index}:${objectId}`;
    const list = [...(points.get(key) ?? []), point];
    setPoints((known) => new Map(known).set(key, list));
    settle(tracker.addPoints(index, objectId, list.map((p) => [p.x, p.y]), list.map((p) => p.label)));
  };

  const exportCoco = () => {
    if (!video) return;
    const images = [...frames.keys()].sort((a, b) => a - b).map((frame) => ({ id: frame + 1, frame_index: frame, width: video.width, height: video.height }));
    const annotations = images
      .flatMap(({ frame_index }) => (frames.get(frame_index)?.objects ?? []).map((o) => annotation(o.mask, video.width, video.height, { image_id: frame_index + 1, track_id: o.objectId })))
      .map((each, i) => ({ id: i + 1, ...each }));
    const coco = { video: video.video_id, images, annotations, categories: [{ id: 1, name: "object" }] };
    save(new Blob([JSON.stringify(coco)], { type: "application/json" }), "tracks.coco.json");
  };

  const sample = async () => {
    setIndex(0);
    setPoints(new Map());
    settle(tracker.load({ frames: await sampleFrames() }));
  };

  const objects = session ? [...new Set([...session.info.object_ids, ...[...frames.values()].flatMap((f) => f.objects.map((o) => o.objectId))])] : [];
  return (
    <section aria-label="video">
      <div className="video-bar">
        <label className="button file">
          Open clip (MP4/WebM) or frames…
          <input type="file" accept="video/mp4,video/webm,image/jpeg,image/png" multiple onChange={(e) => load(e.target.files)} />
        </label>
        <span className="muted">Click an object on any frame (right-click or Shift for background; keys 1–8 pick the object, ← → step frames).</span>
      </div>
      {!video && (
        <div className="intro" data-testid="video-intro">
          <p>
            Track objects through a clip: open an MP4 or WebM (or its frames as images), click an object on any frame, and
            Propagate follows it through every frame, forward and back. Several objects: pick 1–8 before clicking. The masks of
            every frame download as COCO RLE JSON.
          </p>
          <p className="muted">On a CPU tracking takes 3 to 6 s a frame; a GPU is much faster. Clips of up to 300 frames.</p>
          <button onClick={() => void sample()} disabled={loading}>Try a sample clip (12 frames, a ball rolling)</button>
        </div>
      )}
      {error && <p role="alert" className="alert">{describe(error)}</p>}
      {tracker.recreated > 0 && <p className="warning">⚠ The server lost this session; it was recreated and its prompts sent again: propagate again.</p>}
      {video && (
        <>
          <div className="video-bar">
            <label>
              Object:{" "}
              <select aria-label="object" value={objectId} onChange={(e) => setObjectId(Number(e.target.value))}>
                {COLOURS.map((_, i) => <option key={i} value={i + 1}>{i + 1}</option>)}
              </select>
            </label>
            <button onClick={() => settle(tracker.propagate())} disabled={propagating || loading || !objects.length}>Propagate</button>
            <button onClick={tracker.cancel} disabled={!propagating}>Stop</button>
            <button onClick={exportCoco} disabled={!frames.size}>Export masks (COCO RLE JSON)</button>
            <progress aria-label="propagation" max={Math.max(1, progress.total)} value={progress.done} />
            <span data-testid="video-status">
              {loading ? "Working…" : `frame ${index + 1} / ${video.num_frames} · ${frames.size} frames with masks · objects ${objects.join(", ") || "none"}${propagating ? " · propagating" : ""}`}
            </span>
          </div>
          <input aria-label="frame" type="range" min={0} max={video.num_frames - 1} value={index} onChange={(e) => setIndex(Number(e.target.value))} style={{ width: "100%" }} />
          <div className="stage-area">
            <div className="stage sized" style={fit(video.width, video.height)}>
              {picture && <img src={picture} alt={`frame ${index + 1}`} width={video.width} height={video.height} />}
              <canvas
                ref={canvas}
                width={video.width}
                height={video.height}
                data-testid="video-overlay"
                aria-label="tracked masks"
                onContextMenu={(e) => e.preventDefault()}
                onPointerUp={click}
              />
            </div>
          </div>
        </>
      )}
    </section>
  );
}

/** A small clip made here: a ball rolling across a gradient, 12 PNG frames of 320x240. */
async function sampleFrames(): Promise<Blob[]> {
  const canvas = document.createElement("canvas");
  canvas.width = 320;
  canvas.height = 240;
  const context = canvas.getContext("2d")!;
  const frames: Blob[] = [];
  for (let i = 0; i < 12; i += 1) {
    const sky = context.createLinearGradient(0, 0, 0, 240);
    sky.addColorStop(0, "#9ecbff");
    sky.addColorStop(1, "#e8f3e1");
    context.fillStyle = sky;
    context.fillRect(0, 0, 320, 240);
    context.fillStyle = "#5a8f3c";
    context.fillRect(0, 190, 320, 50);
    context.fillStyle = "#d9412b";
    context.beginPath();
    context.arc(50 + i * 20, 160, 28, 0, 2 * Math.PI);
    context.fill();
    frames.push(await new Promise<Blob>((resolve, reject) => canvas.toBlob((b) => (b ? resolve(b) : reject(new Error("no PNG"))), "image/png")));
  }
  return frames;
}
