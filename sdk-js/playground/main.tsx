// The SAM2 playground: segment a picture by clicks, boxes or everything at once, or track objects
// through a clip; built on @sam2/sdk and @sam2/sdk/react, served by the gateway at /playground/.
import { useCallback, useEffect, useMemo, useState } from "react";
import { createRoot } from "react-dom/client";
import { APIConnectionError, createToken, errorFor, Sam2Client, type ModelInfo, type TokenResponse } from "@sam2/sdk";
import { describe } from "./errors.js";
import { ImageView } from "./image.js";
import { VideoView } from "./video.js";
import { weightsLabel } from "./weights.js";

/** A token: traded for the pasted key (the SDK's createToken), else the local stack's
 * development token. The key stays in this page's memory only. Failures are the SDK's errors,
 * so they read like the rest. */
async function token(key: string | undefined): Promise<TokenResponse> {
  if (key) return createToken(key, { baseUrl: location.origin });
  let response: Response;
  try {
    response = await fetch("/v1/auth/dev-token", { method: "POST" });
  } catch {
    throw new APIConnectionError("the gateway cannot be reached");
  }
  const body = await response.json().catch(() => ({}));
  if (response.ok) return body as TokenResponse;
  if (response.status === 404) {
    throw errorFor(401, { code: "missing_api_key", detail: "This server hands out no development tokens", hint: "Paste an API key under “API key”." });
  }
  throw errorFor(response.status, body);
}

function Playground() {
  const [key, setKey] = useState<string>();
  const [keyInput, setKeyInput] = useState("");
  const [keyState, setKeyState] = useState<{ ok: boolean; text: string }>();
  const client = useMemo(() => new Sam2Client({ baseUrl: location.origin, getToken: () => token(key) }), [key]);
  const [view, setView] = useState<"image" | "video">("image");
  const [model, setModel] = useState<ModelInfo>();
  const [cached, setCached] = useState<boolean>();

  useEffect(() => {
    let stale = false;
    client.models().then(
      (answer) => !stale && answer.serving && setModel(answer.serving),
      () => undefined, // the badge waits for the first answer; a failed call shows its own error
    );
    return () => {
      stale = true;
    };
  }, [client]);
  const onAnswer = useCallback((served: ModelInfo, hit: boolean) => {
    setModel(served);
    setCached(hit);
  }, []);

  // A pasted key is tried at once, so a wrong one is said now, not at the first click.
  const applyKey = async () => {
    const pasted = keyInput.trim() || undefined;
    try {
      const granted = await token(pasted);
      setKey(pasted);
      setKeyState({ ok: true, text: pasted ? `Key accepted: tokens for ${granted.scope}, ${Math.round(granted.expires_in / 60)} min each.` : "Using the local stack's development token." });
    } catch (failure) {
      setKeyState({ ok: false, text: describe(failure) ?? "" });
    }
  };

  return (
    <div className="app">
      <header className="top">
        <h1>SAM2 playground</h1>
        <p className={model?.random_weights ? "badge warn" : "badge"} data-testid="badge" title={model ? `${model.model_id}, ${model.weights} weights, ${model.pipeline} pipeline` : undefined}>
          {model ? (
            <>
              <span>{model.model_id.split("/").at(-1)}</span>
              <span>{model.device} · {model.dtype}</span>
              <span>{weightsLabel(model)}</span>
              <span>{cached === undefined ? "no embedding yet" : `embedding ${cached ? "cached" : "computed"}`}</span>
            </>
          ) : (
            <span>model: waiting for the server</span>
          )}
        </p>
        <details className="key">
          <summary>API key</summary>
          <p className="muted">Optional on the local stack. Kept in this page's memory only, traded for short-lived tokens, never stored.</p>
          <form
            onSubmit={(e) => {
              e.preventDefault();
              void applyKey();
            }}
          >
            <input aria-label="API key" type="password" autoComplete="off" value={keyInput} onChange={(e) => setKeyInput(e.target.value)} />
            <button type="submit">Use key</button>
          </form>
          {keyState && <p role={keyState.ok ? "status" : "alert"} className={keyState.ok ? "ok" : "alert"}>{keyState.text}</p>}
        </details>
      </header>
      <nav className="tabs" aria-label="view">
        <button aria-pressed={view === "image"} onClick={() => setView("image")}>Image</button>
        <button aria-pressed={view === "video"} onClick={() => setView("video")}>Video</button>
      </nav>
      <main>{view === "image" ? <ImageView client={client} model={model} onAnswer={onAnswer} /> : <VideoView client={client} />}</main>
    </div>
  );
}

createRoot(document.getElementById("root")!).render(<Playground />);
