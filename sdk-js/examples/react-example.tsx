// A small React page: pick an image, click on it, see the mask. The browser never holds an API
// key: `/api/sam2-token` is your server's route that calls `createToken(apiKey)`.
import { useMemo, useState } from "react";
import { Sam2Client, type TokenResponse } from "@sam2/sdk";
import { MaskOverlay, useSegmenter } from "@sam2/sdk/react";

const client = new Sam2Client({
  baseUrl: "http://127.0.0.1:8080",
  getToken: async () => (await fetch("/api/sam2-token")).json() as Promise<TokenResponse>,
});

export function Segmenter() {
  const [file, setFile] = useState<File>();
  const url = useMemo(() => (file ? URL.createObjectURL(file) : undefined), [file]);
  const { result, loading, error, segment } = useSegmenter(client, file);
  const mask = result && "mask" in result ? result : undefined;
  return (
    <div>
      <input type="file" accept="image/*" onChange={(e) => setFile(e.target.files?.[0])} />
      {url && (
        <div style={{ position: "relative", display: "inline-block", lineHeight: 0 }}>
          <img
            src={url}
            alt="to segment"
            onClick={(e) => {
              const box = e.currentTarget.getBoundingClientRect();
              const scale = e.currentTarget.naturalWidth / box.width;
              // segment() rejects on error like mutateAsync; `error` above shows it, so settle here.
              segment({ points: [[(e.clientX - box.left) * scale, (e.clientY - box.top) * scale]], labels: [1] }).catch(() => undefined);
            }}
          />
          {mask && (
            <MaskOverlay mask={mask.mask} width={mask.width} height={mask.height} />
          )}
        </div>
      )}
      {loading && <p>Segmenting…</p>}
      {error && <p role="alert">{error.message}</p>}
    </div>
  );
}
