// The image view: open a picture, click (a tap on a phone) for the object, right-click, shift,
// a long press or the Background tool for what is not it, drag a box, or segment everything;
// then pick a mask and save it; N keeps it as one object and starts the next. Without a pointer: Tab to the picture, move a cursor with the
// arrow keys, Enter for a point, X and X for a box. Built on @sam2/sdk and useSegmenter.
import { useEffect, useMemo, useRef, useState } from "react";
import type { AutoSegmentation, ModelInfo, Sam2Client, Segmentation } from "@sam2/sdk";
import type { OrtModule } from "@sam2/sdk/local";
import { useSegmenter, type DecoderState } from "@sam2/sdk/react";
import { AutoPanel, defaultKnobs, type AutoKnobs } from "./auto.js";
import { COLOURS } from "./colours.js";
import { describe, unreadable } from "./errors.js";
import { cocoImage, maskPng, save } from "./exports.js";
import { fit, markerRadius, paintBox, paintCursor, paintMasks, paintPoint, type Box, type Point } from "./paint.js";
import { useColdStart } from "./starting.js";

interface Shown { mask: Uint8Array; score: number }
/** An object the user finished: its chosen mask, drawn and exported with the one being made. */
interface Kept { mask: Uint8Array; score: number }
/** Kept objects are drawn from this colour on, after the three candidates of a click. */
const KEPT_COLOUR = 3;
interface Press { x: number; y: number; at: { x: number; y: number }; background: boolean; long: boolean; timer: number | undefined }

const LONG_PRESS_MS = 500;
/** onnxruntime-web, fetched when the page first decodes locally (its WASM is about 15 MB). */
const ORT = async () => (await import("onnxruntime-web")) as unknown as OrtModule;
/** Where clicks are decoded: this browser unless the address says `?decode=server`. */
const START_DECODE = new URLSearchParams(location.search).get("decode") === "server" ? "server" : "local";
const DRAG_PX = 8;
const ARROWS: Record<string, [number, number]> = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };

/** How far an arrow key moves the keyboard cursor: 2% of the picture's shorter side (Shift: 10%). */
function cursorStep(width: number, height: number, fast: boolean): number {
  return Math.max(1, Math.round(Math.min(width, height) * 0.02)) * (fast ? 5 : 1);
}

/** The gestures (shown everywhere), then the keys (hidden on touch screens: styles.css). */
const GESTURES = 3;
const SHORTCUTS: [string, string][] = [
  ["Click / tap", "add a foreground point"],
  ["Right-click, Shift+click, long press", "add a background point"],
  ["Drag", "draw a box"],
  ["F / B", "foreground / background tool"],
  ["A", "segment everything"],
  ["U or Ctrl+Z", "undo"],
  ["C", "clear prompts"],
  ["N", "keep this object's mask and start the next object"],
  ["Esc", "cancel what is running"],
  ["Tab to the picture, then arrows", "move the keyboard cursor (Shift: faster)"],
  ["Enter or Space", "add a point at the cursor (Shift+Enter: background)"],
  ["X, arrows, X", "draw a box from the keyboard"],
];

export function ImageView({ client, model, onAnswer }: { client: Sam2Client; model: ModelInfo | undefined; onAnswer: (model: ModelInfo, cached: boolean) => void }) {
  const [file, setFile] = useState<File>();
  const url = useMemo(() => (file ? URL.createObjectURL(file) : undefined), [file]);
  useEffect(() => () => {
    if (url) URL.revokeObjectURL(url);
  }, [url]);
  const [size, setSize] = useState<{ width: number; height: number }>();
  const [points, setPoints] = useState<Point[]>([]);
  const [box, setBox] = useState<Box>();
  const [draft, setDraft] = useState<Box>();
  // The keyboard cursor (image pixels), drawn while the picture has the focus, and where a
  // box started with X.
  const [cursor, setCursor] = useState<{ x: number; y: number }>();
  const [focused, setFocused] = useState(false);
  const [anchor, setAnchor] = useState<{ x: number; y: number }>();
  // Whether the last input was a key: the picture's focus shows the keyboard cursor only then
  // (a tap on a phone focuses the picture after the touch has ended).
  const byKeyboard = useRef(false);
  useEffect(() => {
    const key = () => (byKeyboard.current = true);
    const pointer = () => (byKeyboard.current = false);
    window.addEventListener("keydown", key, true);
    window.addEventListener("pointerdown", pointer, true);
    return () => {
      window.removeEventListener("keydown", key, true);
      window.removeEventListener("pointerdown", pointer, true);
    };
  }, []);
  const [kept, setKept] = useState<Kept[]>([]);
  const [history, setHistory] = useState<{ points: Point[]; box: Box | undefined }[]>([]);
  const [picked, setPicked] = useState<{ from: object | undefined; index: number }>();
  const [tool, setTool] = useState<0 | 1>(1);
  // The knobs the user set, else the defaults for the server's device (known once it answers).
  const [chosen, setKnobs] = useState<AutoKnobs>();
  const knobs = chosen ?? defaultKnobs(model);
  const [asked, setAsked] = useState<{ kind: "prompt" | "auto"; knobs: AutoKnobs; at: number }>();
  const [now, setNow] = useState(0);
  const [notice, setNotice] = useState<string>();
  const [pageError, setPageError] = useState<string>();
  const [over, setOver] = useState(false);
  const [preparing, setPreparing] = useState(false);
  const [decode, setDecode] = useState<"local" | "server">(START_DECODE);
  const localOptions = useMemo(() => ({ ort: ORT }), []);
  const { result, loading, error, segment, segmentAuto, cancel, reset, decoder, last } = useSegmenter(client, file, { decode, local: localOptions });
  // A locally decoded mask's prompt and the mask it refined: polygons and the overlay come from
  // the server, which is asked the same chain of prompts.
  const chain = useRef(new Map<string, { fields: Record<string, unknown>; parent: string | null }>());
  const canvas = useRef<HTMLCanvasElement>(null);
  const press = useRef<Press | undefined>(undefined);
  // The shown answer's prompt in the API's words, to ask for it again as polygons or an overlay.
  const request = useRef<Record<string, unknown>>({});

  useEffect(() => {
    if (result) onAnswer(result.model, result.cached);
    const id = result && "maskId" in result ? result.maskId : null;
    if (id && result!.warnings.includes("decoded locally")) {
      const { refine, ...fields } = request.current;
      chain.current.set(id, { fields, parent: typeof refine === "string" ? refine : null });
    }
  }, [result, onAnswer]);
  useEffect(() => {
    if (!loading) return;
    const timer = setInterval(() => setNow(performance.now()), 100);
    return () => clearInterval(timer);
  }, [loading]);

  const shown: Shown[] = useMemo(() => {
    if (!result) return [];
    if ("allMasks" in result) {
      const seg = result as Segmentation;
      return seg.allMasks.length ? seg.allMasks.map((mask, i) => ({ mask, score: seg.allScores[i] ?? 0 })) : [{ mask: seg.mask, score: seg.score }];
    }
    return (result as AutoSegmentation).masks.map((m) => ({ mask: m.mask, score: m.predictedIou }));
  }, [result]);
  const isAuto = result !== undefined && !("allMasks" in result);
  const lastMaskId = result && !isAuto ? (result as Segmentation).maskId : null;

  // The mask the user picked in this answer, else all of an automatic answer or a click's best.
  const selected = picked && picked.from === result ? picked.index : isAuto ? -1 : shown.reduce((best, m, i, all) => (m.score > (all[best]?.score ?? -1) ? i : best), 0);
  const setSelected = (index: number) => setPicked({ from: result, index });

  useEffect(() => {
    const context = canvas.current?.getContext("2d");
    if (!context || !size) return;
    const layers = shown.map((s, i) => ({ mask: s.mask, colour: i })).filter((_, i) => selected < 0 || i === selected);
    const finished = kept.map((o, i) => ({ mask: o.mask, colour: KEPT_COLOUR + i }));
    paintMasks(context, size.width, size.height, [...finished, ...layers]);
    const radius = markerRadius(canvas.current!);
    if (box) paintBox(context, box, radius, false);
    if (draft) paintBox(context, draft, radius, true);
    for (const point of points) paintPoint(context, point, radius);
    if (focused && cursor) paintCursor(context, cursor, radius);
  }, [shown, selected, size, points, box, draft, focused, cursor, kept]);

  const begin = (kind: "prompt" | "auto", used: AutoKnobs) => {
    if (loading && asked?.kind === "auto" && kind === "prompt") setNotice("Segment everything was stopped so that this prompt is answered now.");
    else setNotice(undefined);
    setPageError(undefined);
    setNow(performance.now());
    setAsked({ kind, knobs: used, at: performance.now() });
  };
  // segment() rejects on error, like mutateAsync; the page shows the hook's `error` instead.
  const settle = (call: Promise<unknown>) => void call.catch(() => undefined);

  const ask = (nextPoints: Point[], nextBox: Box | undefined, refine: string | null) => {
    if (!nextPoints.length && !nextBox) return reset();
    begin("prompt", knobs);
    request.current = prompt(nextPoints, nextBox, refine);
    settle(segment({
      ...(nextPoints.length ? { points: nextPoints.map((p) => [p.x, p.y]), labels: nextPoints.map((p) => p.label) } : {}),
      ...(nextBox ? { box: nextBox } : {}),
      ...(refine ? { refine } : {}),
      returnAllMasks: true,
    }));
  };
  // A point added to an object refines its last mask (SAM2's mask_input), as Meta's demo does.
  const run = (nextPoints: Point[], nextBox: Box | undefined, refine: string | null = null) => {
    setHistory((h) => [...h, { points, box }]);
    setPoints(nextPoints);
    setBox(nextBox);
    ask(nextPoints, nextBox, refine);
  };

  const everything = (used: AutoKnobs = knobs) => {
    if (!file) return;
    setHistory([]);
    setPoints([]);
    setBox(undefined);
    begin("auto", used);
    request.current = { mode: "auto", ...used };
    settle(segmentAuto(used));
  };
  const stop = () => {
    if (!loading) return;
    cancel();
    setNotice(`Cancelled after ${((performance.now() - (asked?.at ?? 0)) / 1000).toFixed(1)} s; the server stopped its work too.`);
  };
  const undo = () => {
    const last = history.at(-1);
    if (!last) return;
    setHistory((h) => h.slice(0, -1));
    setPoints(last.points);
    setBox(last.box);
    ask(last.points, last.box, null);
  };
  const clear = () => {
    setHistory([]);
    setPoints([]);
    setBox(undefined);
    setDraft(undefined);
    setAnchor(undefined);
    setNotice(undefined);
    setPageError(undefined);
    reset();
  };
  // The shown mask becomes a finished object; the next click starts another (same embedding).
  const keep = () => {
    const chosen = !isAuto && selected >= 0 ? shown[selected] : undefined;
    if (!chosen) {
      setNotice("Click an object first: the mask it gets is what N keeps.");
      return;
    }
    setKept((k) => [...k, { mask: chosen.mask, score: chosen.score }]);
    clear();
    setNotice(`Object ${kept.length + 1} kept. Click the next object.`);
  };
  const load = async (picked: File | undefined) => {
    if (!picked) return;
    try {
      (await createImageBitmap(picked)).close();
    } catch {
      setPageError(unreadable(picked.name));
      return;
    }
    clear();
    setKept([]);
    setSize(undefined);
    setFile(picked);
  };

  useEffect(() => {
    const onKey = (event: KeyboardEvent) => {
      if (event.target instanceof HTMLInputElement || event.target instanceof HTMLSelectElement || event.altKey || event.metaKey) return;
      const key = event.key.toLowerCase();
      if (event.ctrlKey) {
        if (key === "z") undo();
        return;
      }
      if (key === "u") undo();
      else if (key === "c") clear();
      else if (key === "n") keep();
      else if (key === "a") everything();
      else if (key === "f") setTool(1);
      else if (key === "b") setTool(0);
      else if (key === "escape") {
        press.current = undefined;
        setDraft(undefined);
        setAnchor(undefined);
        stop();
      }
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  });

  const toImage = (event: { clientX: number; clientY: number }) => {
    const rect = canvas.current!.getBoundingClientRect();
    const scale = size!.width / rect.width;
    const clamp = (v: number, hi: number) => Math.min(hi - 1, Math.max(0, Math.round(v)));
    return { x: clamp((event.clientX - rect.left) * scale, size!.width), y: clamp((event.clientY - rect.top) * scale, size!.height) };
  };
  const onPointerDown = (event: React.PointerEvent<HTMLCanvasElement>) => {
    setFocused(false); // the keyboard cursor is for keyboard users
    if (event.button !== 0 && event.button !== 2) return;
    event.currentTarget.setPointerCapture(event.pointerId);
    const held: Press = { x: event.clientX, y: event.clientY, at: toImage(event), background: event.button === 2 || event.shiftKey, long: false, timer: undefined };
    if (event.pointerType !== "mouse") held.timer = window.setTimeout(() => (held.long = true), LONG_PRESS_MS);
    press.current = held;
  };
  const onPointerMove = (event: React.PointerEvent<HTMLCanvasElement>) => {
    const held = press.current;
    if (!held || (!draft && Math.hypot(event.clientX - held.x, event.clientY - held.y) < DRAG_PX)) return;
    clearTimeout(held.timer);
    const end = toImage(event);
    setDraft([Math.min(held.at.x, end.x), Math.min(held.at.y, end.y), Math.max(held.at.x, end.x), Math.max(held.at.y, end.y)]);
  };
  const onPointerUp = () => {
    const held = press.current;
    press.current = undefined;
    if (!held) return;
    clearTimeout(held.timer);
    if (draft) {
      setDraft(undefined);
      if (draft[2] > draft[0] && draft[3] > draft[1]) run(points, draft);
      return;
    }
    const label = held.background || held.long ? 0 : tool;
    run([...points, { ...held.at, label }], box, points.length ? lastMaskId : null);
  };

  // The keyboard's way to prompt, on the focused picture (the page's shortcuts still apply).
  const onStageKey = (event: React.KeyboardEvent<HTMLCanvasElement>) => {
    if (!size || event.altKey || event.ctrlKey || event.metaKey) return;
    setFocused(true);
    const at = cursor ?? { x: Math.floor(size.width / 2), y: Math.floor(size.height / 2) };
    const arrow = ARROWS[event.key];
    if (arrow) {
      event.preventDefault(); // not a page scroll
      const step = cursorStep(size.width, size.height, event.shiftKey);
      const next = {
        x: Math.min(size.width - 1, Math.max(0, at.x + arrow[0] * step)),
        y: Math.min(size.height - 1, Math.max(0, at.y + arrow[1] * step)),
      };
      setCursor(next);
      if (anchor) setDraft([Math.min(anchor.x, next.x), Math.min(anchor.y, next.y), Math.max(anchor.x, next.x), Math.max(anchor.y, next.y)]);
    } else if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      const label = event.shiftKey ? 0 : tool;
      run([...points, { ...at, label }], box, points.length ? lastMaskId : null);
    } else if (event.key.toLowerCase() === "x") {
      if (!anchor) {
        setAnchor(at);
        setDraft([at.x, at.y, at.x, at.y]);
        return;
      }
      setAnchor(undefined);
      setDraft(undefined);
      const drawn: Box = [Math.min(anchor.x, at.x), Math.min(anchor.y, at.y), Math.max(anchor.x, at.x), Math.max(anchor.y, at.y)];
      if (drawn[2] > drawn[0] && drawn[3] > drawn[1]) run(points, drawn);
    }
  };

  // Polygons and the rendered overlay come from the API: the same prompt again, by image_id
  // (a click costs a decoder pass on the cached embedding; automatic mode runs again).
  const downloadFromApi = async (fields: Record<string, unknown>, name: string) => {
    if (!result) return;
    setPreparing(true);
    setPageError(undefined);
    try {
      const { refine, ...asked } = request.current;
      const onServer = await serverMaskId(typeof refine === "string" ? refine : null);
      const answer = await client.request<Record<string, unknown>>("POST", "/v1/segment", { ...asked, ...(onServer ? { refine: onServer } : {}), image_id: result.imageId, ...fields });
      if (fields.render) {
        const bytes = Uint8Array.from(atob(String(answer.overlay)), (c) => c.charCodeAt(0));
        save(new Blob([bytes], { type: "image/png" }), name);
      } else {
        const masks = isAuto ? (answer.masks as { segmentation: unknown }[]).map((m) => m.segmentation) : (answer.all_masks as unknown[]);
        const chosen = isAuto ? masks.filter((_, i) => selected < 0 || i === selected) : [masks[selected]];
        save(new Blob([JSON.stringify({ image: file?.name ?? "image", masks: chosen })], { type: "application/json" }), name);
      }
    } catch (failure) {
      setPageError(describe(failure));
    } finally {
      setPreparing(false);
    }
  };
  // The server's mask_id for a mask: a server's as it is, a local one's by asking the server its
  // chain of prompts (each refining the one before), as the local decoder answered them.
  const serverMaskId = async (maskId: string | null): Promise<string | null> => {
    const link = maskId ? chain.current.get(maskId) : undefined;
    if (!link) return maskId;
    const parent = await serverMaskId(link.parent);
    const answer = await client.request<{ mask_id?: string }>("POST", "/v1/segment", { ...link.fields, ...(parent ? { refine: parent } : {}), image_id: result!.imageId, mask_format: "rle" });
    return answer.mask_id ?? null;
  };
  // One annotation per object: the kept ones, then a click's chosen mask, or every automatic
  // mask (or the one picked).
  const objects = [...kept, ...shown.filter((_, i) => (isAuto && selected < 0) || i === selected)];

  const alert = pageError ?? describe(error);
  const elapsed = asked ? Math.max(0, (now - asked.at) / 1000) : 0;
  const startingS = useColdStart(loading);
  const timings = result?.timingsMs;
  const empty = isAuto && shown.length === 0 && asked?.kind === "auto";
  return (
    <section aria-label="image" className="workspace">
      <div className="tools" role="group" aria-label="tools">
        <label className="button file">
          Open image…
          <input type="file" accept="image/*" onChange={(e) => void load(e.target.files?.[0])} />
        </label>
        <div className="segmented" role="group" aria-label="point tool">
          <button aria-pressed={tool === 1} onClick={() => setTool(1)}>
            <span className="dot fg" aria-hidden="true" /> Foreground <kbd>F</kbd>
          </button>
          <button aria-pressed={tool === 0} onClick={() => setTool(0)}>
            <span className="dot bg" aria-hidden="true" /> Background <kbd>B</kbd>
          </button>
        </div>
        <div className="row">
          <button onClick={undo} disabled={!history.length}>Undo <kbd>U</kbd></button>
          <button onClick={clear} disabled={!points.length && !box && !result}>Clear <kbd>C</kbd></button>
        </div>
        <button onClick={keep} disabled={!result || isAuto}>Keep, next object <kbd>N</kbd></button>
        <div className="segmented" role="group" aria-label="decode clicks in">
          <button aria-pressed={decode === "local"} onClick={() => setDecode("local")}>This browser</button>
          <button aria-pressed={decode === "server"} onClick={() => setDecode("server")}>Server</button>
        </div>
        <DecoderStatus decoder={decoder} />
      </div>
      <div className="more">
        <AutoPanel
          knobs={knobs}
          onChange={setKnobs}
          onRun={() => everything()}
          disabled={!file}
        />
        <details className="shortcuts">
          <summary>Shortcuts and gestures</summary>
          <dl>
            {SHORTCUTS.map(([keys, what], i) => (
              <div key={keys} className={i < GESTURES ? undefined : "keys"}><dt>{keys}</dt><dd>{what}</dd></div>
            ))}
          </dl>
        </details>
      </div>

      <div
        className={over ? "stage-area over" : "stage-area"}
        onDragOver={(e) => { e.preventDefault(); setOver(true); }}
        onDragLeave={() => setOver(false)}
        onDrop={(e) => { e.preventDefault(); setOver(false); void load(e.dataTransfer.files[0]); }}
      >
        {url ? (
          <div className={size ? "stage sized" : "stage"} style={size ? fit(size.width, size.height) : undefined}>
            <img src={url} alt="the image to segment" onLoad={(e) => setSize({ width: e.currentTarget.naturalWidth, height: e.currentTarget.naturalHeight })} onError={() => { setPageError(unreadable(file?.name ?? "the file")); setFile(undefined); }} />
            {size && (
              <canvas
                ref={canvas}
                width={size.width}
                height={size.height}
                data-testid="overlay"
                tabIndex={0}
                aria-label="masks and prompts: click or tap an object, drag a box; or with the keyboard, arrow keys move a cursor, Enter adds a point there, X starts and ends a box"
                onFocus={() => {
                  setFocused(byKeyboard.current);
                  setCursor((c) => c ?? { x: Math.floor(size.width / 2), y: Math.floor(size.height / 2) });
                }}
                onBlur={() => setFocused(false)}
                onKeyDown={onStageKey}
                onContextMenu={(e) => e.preventDefault()}
                onPointerDown={onPointerDown}
                onPointerMove={onPointerMove}
                onPointerUp={onPointerUp}
                onPointerCancel={() => { press.current = undefined; setDraft(undefined); }}
              />
            )}
          </div>
        ) : (
          <p className="placeholder">Drop an image here, or use <strong>Open image…</strong></p>
        )}
      </div>

      <aside className="results" aria-label="results">
        <div className="activity" aria-live="polite">
          {loading ? (
            <>
              <span data-testid="elapsed">
                {startingS !== undefined ? `Starting the GPU (about ${startingS} s)` : asked?.kind === "auto" ? "Segmenting everything" : "Segmenting"}… {elapsed.toFixed(1)} s
              </span>
              <button onClick={stop}>Cancel <kbd>Esc</kbd></button>
              <progress aria-label="working" />
            </>
          ) : notice ? (
            <span data-testid="notice">{notice}</span>
          ) : (
            <span className="muted">{!file ? "Open an image to start." : focused ? "Arrows move the cursor; Enter adds a point; X starts and ends a box." : "Click or tap the object; drag for a box."}</span>
          )}
        </div>
        {alert && <p role="alert" className="alert">{alert}</p>}
        {last && result && !isAuto && (
          <p data-testid="where" className="status" key={(result as Segmentation).maskId ?? undefined}>
            {last.where === "local" ? `Decoded in this browser (${decoder.backend ?? "wasm"})` : "Answered by the server"} in {last.ms.toFixed(0)} ms
          </p>
        )}
        {result && (
          <p data-testid="status" className="status">
            {isAuto ? `${shown.length} masks` : `score ${shown[selected]?.score.toFixed(3) ?? "-"}`} · embedding {result.cached ? "cached" : "computed"} · {timings?.total_ms?.toFixed(0)} ms total, {timings?.embed_ms?.toFixed(0)} ms encoder
          </p>
        )}
        {empty && asked && <Empty knobs={asked.knobs} random={result.model.random_weights} onRetry={(retry) => { setKnobs(retry); everything(retry); }} />}
        {result?.warnings.map((warning) => (
          <p key={warning} className="warning">⚠ {warning}</p>
        ))}
        {kept.length > 0 && (
          <ol className="masks" aria-label="kept objects">
            {kept.map((o, i) => (
              <li key={i} className="kept">
                <span className="swatch" style={{ background: `rgb(${COLOURS[(KEPT_COLOUR + i) % COLOURS.length]!.join(" ")})` }} aria-hidden="true" /> object {i + 1}: {o.score.toFixed(3)}
                <button aria-label={`remove object ${i + 1}`} onClick={() => setKept((k) => k.filter((_, j) => j !== i))}>×</button>
              </li>
            ))}
          </ol>
        )}
        {shown.length > 0 && (
          <ol className="masks" aria-label="masks">
            {shown.map((s, i) => (
              <li key={i}>
                <button onClick={() => setSelected(i)} aria-pressed={i === selected}>
                  <span className="swatch" style={{ background: `rgb(${COLOURS[i % COLOURS.length]!.join(" ")})` }} aria-hidden="true" /> mask {i + 1}: {s.score.toFixed(3)}
                </button>
              </li>
            ))}
            {isAuto && (
              <li><button onClick={() => setSelected(-1)} aria-pressed={selected < 0}>all masks</button></li>
            )}
          </ol>
        )}
        {shown.length > 0 && (
          <p className="muted help" data-testid="masks-help">
            {isAuto
              ? "Each mask's number is its predicted IoU: SAM2's own estimate (0 to 1) of how good the mask is. Pick one to see it alone."
              : shown.length > 1
                ? "A click can mean a whole object, a part of it or a smaller part: SAM2 answers with three candidate masks, each scored by its predicted IoU (its own estimate, 0 to 1, of how good the mask is). The best is selected; pick another if it fits better."
                : "The score is SAM2's predicted IoU: its own estimate (0 to 1) of how good the mask is."}
          </p>
        )}
        <div className="exports" role="group" aria-label="downloads">
          <button disabled={selected < 0 || !shown[selected] || !size} onClick={() => void maskPng(shown[selected]!.mask, size!.width, size!.height).then((blob) => save(blob, "mask.png"), (failure: unknown) => setPageError(describe(failure)))}>
            Download mask PNG
          </button>
          <button disabled={!objects.length || !size} onClick={() => save(cocoImage(file?.name ?? "image", size!.width, size!.height, objects), "masks.coco.json")}>
            Download COCO JSON
          </button>
          <button onClick={() => void downloadFromApi({ mask_format: "polygon", return_all_masks: !isAuto }, "polygons.json")} disabled={!objects.length || preparing}>
            Download polygons
          </button>
          <button onClick={() => void downloadFromApi({ mask_format: "rle", render: "png" }, "overlay.png")} disabled={!shown.length || preparing}>
            Download overlay PNG
          </button>
        </div>
      </aside>
    </section>
  );
}

/** Where clicks are decoded now: the local decoder's downloads, readiness, or why the server
 * answers instead. */
function DecoderStatus({ decoder }: { decoder: DecoderState }) {
  if (decoder.mode === "server") return <p className="muted" data-testid="decoder">Clicks are decoded on the server.</p>;
  if (decoder.status === "ready") return <p className="ok" data-testid="decoder">Clicks are decoded in this browser ({decoder.backend}).</p>;
  const progress = decoder.progress;
  const share = progress?.total ? Math.round((100 * progress.loaded) / progress.total) : undefined;
  return (
    <p className={decoder.status === "failed" ? "warning" : "muted"} data-testid="decoder">
      Server fallback: {decoder.reason}
      {decoder.status === "loading" && progress && (
        <>
          {" "}· downloading the {progress.file}{share !== undefined ? ` ${share}%` : ""}
          {share !== undefined && <progress aria-label={`${progress.file} download`} max={100} value={share} />}
        </>
      )}
    </p>
  );
}

/** Why automatic mode answered with no mask, and the way to get some. */
function Empty({ knobs, random, onRetry }: { knobs: AutoKnobs; random: boolean; onRetry: (knobs: AutoKnobs) => void }) {
  const n = knobs.points_per_side;
  return (
    <div className="empty" data-testid="empty">
      <p>
        No mask survived the thresholds: of {n}×{n} = {n * n} grid prompts, none gave a mask with predicted IoU ≥ {knobs.pred_iou_thresh} and stability ≥ {knobs.stability_score_thresh}.
        {random ? " This server runs random weights, whose masks score low: that is expected." : " Lower the thresholds, or use a finer grid."}
      </p>
      <button onClick={() => onRetry({ ...knobs, pred_iou_thresh: 0, stability_score_thresh: 0 })}>Run again with both thresholds at 0</button>
    </div>
  );
}

/** A click or box prompt as the API names its fields. */
function prompt(points: Point[], box: Box | undefined, refine: string | null | undefined): Record<string, unknown> {
  return {
    ...(points.length ? { point_coords: points.map((p) => [p.x, p.y]), point_labels: points.map((p) => p.label) } : {}),
    ...(box ? { mode: "box", box_coords: box } : {}),
    ...(refine ? { refine } : {}),
  };
}
