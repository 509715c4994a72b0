// The SAM2 playground: load a picture, click (left: foreground; right or shift: background),
// drag a box, or segment everything; built on @sam2/sdk and @sam2/sdk/react.
import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import { createRoot } from "react-dom/client";
import { encodeRle, Sam2Client, type AutoSegmentation, type Segmentation, type TokenResponse } from "@sam2/sdk";
import { useSegmenter } from "@sam2/sdk/react";
import { COLOURS } from "./colours.js";
import { VideoView } from "./video.js";

type Point = { x: number; y: number; label: 0 | 1 };
type Box = [number, number, number, number];
interface Shown { mask: Uint8Array; score: number }

/** Tokens: the local stack's development token, else one traded for a pasted key (kept in memory only). */
function tokenSource(apiKey: () => string | undefined): () => Promise<TokenResponse> {
  return async () => {
    const key = apiKey();
    const response = key
      ? await fetch("/v1/auth/token", { method: "POST", headers: { authorization: `Bearer ${key}` } })
      : await fetch("/v1/auth/dev-token", { method: "POST" });
    const body = await response.json();
    if (!response.ok) throw new Error(body.detail ? `${body.detail}. ${body.hint ?? ""}` : "could not get a token: paste an API key");
    return body as TokenResponse;
  };
}

function Playground() {
  const keyRef = useRef<string | undefined>(undefined);
  const [keyInput, setKeyInput] = useState("");
  const client = useMemo(() => new Sam2Client({ baseUrl: location.origin, getToken: tokenSource(() => keyRef.current) }), []);
  const [view, setView] = useState<"image" | "video">("image");
  return (
    <main>
      <h1>SAM2 playground</h1>
      <details>
        <summary>API key (optional on the local stack)</summary>
        <p>The key stays in this page's memory; it is traded for a short-lived token and never stored.</p>
        <input aria-label="API key" type="password" value={keyInput} onChange={(e) => setKeyInput(e.target.value)} />
        <button onClick={() => (keyRef.current = keyInput.trim() || undefined)}>Use key</button>
      </details>
      <nav>
        <button aria-pressed={view === "image"} onClick={() => setView("image")}>Image</button>
        <button aria-pressed={view === "video"} onClick={() => setView("video")}>Video</button>
      </nav>
      {view === "image" ? <App client={client} /> : <VideoView client={client} />}
    </main>
  );
}

function App({ client }: { client: Sam2Client }) {
  const [file, setFile] = useState<File>();
  const url = useMemo(() => (file ? URL.createObjectURL(file) : undefined), [file]);
  const [size, setSize] = useState<{ width: number; height: number }>();
  const [points, setPoints] = useState<Point[]>([]);
  const [box, setBox] = useState<Box>();
  const [history, setHistory] = useState<{ points: Point[]; box: Box | undefined }[]>([]);
  const [selected, setSelected] = useState(0);
  const [over, setOver] = useState(false);
  const { result, loading, error, segment, segmentAuto, reset } = useSegmenter(client, file);
  // segment() rejects on error, like mutateAsync; the page shows `error` from the hook instead.
  const settle = (call: Promise<unknown>) => void call.catch(() => undefined);
  const canvas = useRef<HTMLCanvasElement>(null);
  // The shown answer's prompt in the API's words, to ask for it again as polygons or an overlay.
  const asked = useRef<Record<string, unknown>>({});
  const [preparing, setPreparing] = useState(false);
  const [downloadError, setDownloadError] = useState<string>();
  const drag = useRef<{ x: number; y: number } | undefined>(undefined);

  const shown: Shown[] = useMemo(() => {
    if (!result) return [];
    if ("allMasks" in result) {
      const seg = result as Segmentation;
      return seg.allMasks.length ? seg.allMasks.map((mask, i) => ({ mask, score: seg.allScores[i] ?? 0 })) : [{ mask: seg.mask, score: seg.score }];
    }
    return (result as AutoSegmentation).masks.map((m) => ({ mask: m.mask, score: m.predictedIou }));
  }, [result]);
  const isAuto = result !== undefined && !("allMasks" in result);

  useEffect(() => setSelected(isAuto ? -1 : shown.length ? shown.reduce((best, m, i, all) => (m.score > (all[best]?.score ?? -1) ? i : best), 0) : 0), [shown, isAuto]);

  useEffect(() => {
    const context = canvas.current?.getContext("2d");
    if (!context || !size) return;
    const { width, height } = size;
    const rgba = new Uint8ClampedArray(width * height * 4);
    const layers = isAuto ? shown.map((s, i) => ({ ...s, i })) : shown.filter((_, i) => i === selected).map((s) => ({ ...s, i: selected }));
    for (const { mask, i } of layers) {
      const [r, g, b] = COLOURS[i % COLOURS.length]!;
      for (let p = 0; p < mask.length; p += 1) {
        if (!mask[p]) continue;
        const x = p % width;
        const edge = x === 0 || x === width - 1 || !mask[p - 1] || !mask[p + 1] || !mask[p - width] || !mask[p + width];
        rgba.set([r, g, b, edge ? 255 : 110], p * 4);
      }
    }
    context.putImageData(new ImageData(rgba, width, height), 0, 0);
    for (const point of points) {
      context.fillStyle = point.label ? "#00c853" : "#d50000";
      context.beginPath();
      context.arc(point.x, point.y, Math.max(4, width / 150), 0, 2 * Math.PI);
      context.fill();
    }
    if (box) {
      context.strokeStyle = "#ffeb3b";
      context.lineWidth = Math.max(2, width / 400);
      context.strokeRect(box[0], box[1], box[2] - box[0], box[3] - box[1]);
    }
  }, [shown, selected, isAuto, size, points, box]);

  // A point added to an object refines its last mask (SAM2's mask_input), as Meta's demo does.
  const run = useCallback(
    (nextPoints: Point[], nextBox: Box | undefined, refine?: string | null) => {
      setHistory((h) => [...h, { points, box }]);
      setPoints(nextPoints);
      setBox(nextBox);
      if (!nextPoints.length && !nextBox) return reset();
      asked.current = prompt(nextPoints, nextBox, refine);
      settle(segment({
        ...(nextPoints.length ? { points: nextPoints.map((p) => [p.x, p.y]), labels: nextPoints.map((p) => p.label) } : {}),
        ...(nextBox ? { box: nextBox } : {}),
        ...(refine ? { refine } : {}),
        returnAllMasks: true,
      }));
    },
    [points, box, segment, reset],
  );
  const lastMaskId = result && !isAuto ? (result as Segmentation).maskId : null;

  const toImage = (event: { clientX: number; clientY: number }) => {
    const rect = canvas.current!.getBoundingClientRect();
    const scale = size!.width / rect.width;
    return { x: Math.round((event.clientX - rect.left) * scale), y: Math.round((event.clientY - rect.top) * scale) };
  };

  const undo = () => {
    const last = history.at(-1);
    if (!last) return;
    setHistory((h) => h.slice(0, -1));
    setPoints(last.points);
    setBox(last.box);
    asked.current = prompt(last.points, last.box, null);
    if (last.points.length || last.box) settle(segment({ ...(last.points.length ? { points: last.points.map((p) => [p.x, p.y]), labels: last.points.map((p) => p.label) } : {}), ...(last.box ? { box: last.box } : {}), returnAllMasks: true }));
    else reset();
  };
  const clear = () => {
    setHistory([]);
    setPoints([]);
    setBox(undefined);
    reset();
  };
  const load = (picked: File | undefined) => {
    if (!picked) return;
    clear();
    setSize(undefined);
    setFile(picked);
  };

  useEffect(() => {
    const onKey = (event: KeyboardEvent) => {
      if (event.target instanceof HTMLInputElement) return;
      if (event.key === "u") undo();
      if (event.key === "c") clear();
      if (event.key === "a" && file) everything();
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  });

  const downloadPng = () => {
    const mask = shown[selected]?.mask;
    if (!mask || !size) return;
    const out = document.createElement("canvas");
    out.width = size.width;
    out.height = size.height;
    const rgba = new Uint8ClampedArray(mask.length * 4);
    mask.forEach((v, i) => rgba.set(v ? [255, 255, 255, 255] : [0, 0, 0, 255], i * 4));
    out.getContext("2d")!.putImageData(new ImageData(rgba, size.width, size.height), 0, 0);
    out.toBlob((blob) => blob && save(blob, "mask.png"));
  };
  const everything = () => {
    asked.current = { mode: "auto", ...AUTO };
    settle(segmentAuto(AUTO));
  };
  // Polygons and the rendered overlay come from the API: the same prompt again, by image_id
  // (a click costs a decoder pass on the cached embedding; automatic mode runs again).
  const downloadFromApi = async (fields: Record<string, unknown>, name: string) => {
    if (!result) return;
    setPreparing(true);
    setDownloadError(undefined);
    try {
      const answer = await client.request<Record<string, unknown>>("POST", "/v1/segment", { ...asked.current, image_id: result.imageId, ...fields });
      if (fields.render) {
        const bytes = Uint8Array.from(atob(String(answer.overlay)), (c) => c.charCodeAt(0));
        save(new Blob([bytes], { type: "image/png" }), name);
      } else {
        const masks = isAuto ? (answer.masks as { segmentation: unknown }[]).map((m) => m.segmentation) : (answer.all_masks as unknown[]);
        const chosen = isAuto ? masks : [masks[selected]];
        save(new Blob([JSON.stringify({ image: file?.name ?? "image", masks: chosen })], { type: "application/json" }), name);
      }
    } catch (failure) {
      const hint = failure instanceof Error && "hint" in failure && failure.hint ? ` ${String(failure.hint)}` : "";
      setDownloadError(`${failure instanceof Error ? failure.message : String(failure)}${hint}`);
    } finally {
      setPreparing(false);
    }
  };
  const downloadCoco = () => {
    if (!size) return;
    const annotations = shown.map((s, i) => ({ id: i + 1, image_id: 1, category_id: 1, segmentation: encodeRle(s.mask, size.width, size.height), area: s.mask.reduce((a, v) => a + v, 0), score: s.score, iscrowd: 0 }));
    const coco = { images: [{ id: 1, width: size.width, height: size.height, file_name: file?.name ?? "image" }], annotations, categories: [{ id: 1, name: "object" }] };
    save(new Blob([JSON.stringify(coco)], { type: "application/json" }), "masks.coco.json");
  };

  const timings = result?.timingsMs;
  return (
    <section aria-label="image">
      <div
        className={over ? "drop over" : "drop"}
        onDragOver={(e) => { e.preventDefault(); setOver(true); }}
        onDragLeave={() => setOver(false)}
        onDrop={(e) => { e.preventDefault(); setOver(false); load(e.dataTransfer.files[0]); }}
      >
        <label>Image: <input type="file" accept="image/*" onChange={(e) => load(e.target.files?.[0])} /></label> or drop one here.
      </div>
      <div>
        <button onClick={() => file && everything()} disabled={!file || loading}>Segment everything (a)</button>
        <button onClick={undo} disabled={!history.length}>Undo (u)</button>
        <button onClick={clear}>Clear (c)</button>
        <button onClick={downloadPng} disabled={selected < 0 || !shown.length}>Download mask PNG</button>
        <button onClick={downloadCoco} disabled={!shown.length}>Download COCO JSON</button>
        <button onClick={() => settle(downloadFromApi({ mask_format: "polygon", return_all_masks: !isAuto }, "polygons.json"))} disabled={!shown.length || (!isAuto && selected < 0) || preparing}>
          Download polygons
        </button>
        <button onClick={() => settle(downloadFromApi({ mask_format: "rle", render: "png" }, "overlay.png"))} disabled={!shown.length || preparing}>
          Download overlay PNG
        </button>
      </div>
      {result?.warnings.map((warning) => (
        <p key={warning} className="warning">⚠ {warning}</p>
      ))}
      {downloadError && <p role="alert">{downloadError}</p>}
      {error && <p role="alert">{error.message}{"hint" in error && error.hint ? ` ${String(error.hint)}` : ""}</p>}
      <div className="row">
        {url && (
          <div className="stage">
            <img src={url} alt="the image to segment" onLoad={(e) => setSize({ width: e.currentTarget.naturalWidth, height: e.currentTarget.naturalHeight })} />
            {size && (
              <canvas
                ref={canvas}
                width={size.width}
                height={size.height}
                data-testid="overlay"
                aria-label="masks"
                onContextMenu={(e) => e.preventDefault()}
                onPointerDown={(e) => (drag.current = toImage(e))}
                onPointerUp={(e) => {
                  const start = drag.current;
                  drag.current = undefined;
                  if (!start) return;
                  const end = toImage(e);
                  if (Math.abs(end.x - start.x) > 8 && Math.abs(end.y - start.y) > 8) {
                    run(points, [Math.min(start.x, end.x), Math.min(start.y, end.y), Math.max(start.x, end.x), Math.max(start.y, end.y)]);
                  } else {
                    run([...points, { ...end, label: e.button === 2 || e.shiftKey ? 0 : 1 }], box, points.length ? lastMaskId : null);
                  }
                }}
              />
            )}
          </div>
        )}
        <aside className="side" aria-live="polite">
          {loading && <p>Segmenting…</p>}
          {result && (
            <>
              <p data-testid="status">
                {isAuto ? `${shown.length} masks` : `score ${shown[selected]?.score.toFixed(3) ?? "-"}`} · embedding {result.cached ? "cached" : "computed"} · {timings?.total_ms?.toFixed(0)} ms total, {timings?.embed_ms?.toFixed(0)} ms encoder
              </p>
              <ol>
                {shown.map((s, i) => (
                  <li key={i} className={i === selected ? "selected" : ""}>
                    <button onClick={() => setSelected(i)} aria-pressed={i === selected}>mask {i + 1}: {s.score.toFixed(3)}</button>
                  </li>
                ))}
              </ol>
            </>
          )}
        </aside>
      </div>
    </section>
  );
}

const AUTO = { points_per_side: 16 };

/** A click or box prompt as the API names its fields. */
function prompt(points: Point[], box: Box | undefined, refine: string | null | undefined): Record<string, unknown> {
  return {
    ...(points.length ? { point_coords: points.map((p) => [p.x, p.y]), point_labels: points.map((p) => p.label) } : {}),
    ...(box ? { mode: "box", box_coords: box } : {}),
    ...(refine ? { refine } : {}),
  };
}

function save(blob: Blob, name: string) {
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = name;
  link.click();
}

createRoot(document.getElementById("root")!).render(<Playground />);
