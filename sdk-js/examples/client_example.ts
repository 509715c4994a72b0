// Segment a picture through the local stack with the TypeScript SDK (Node 20+).
//
//   scripts/dev                                   # in another terminal; note the printed key
//   export SAM2_API_KEY=sam2_...
//   npx tsc && node out/client_example.js photo.jpg   (ESM or CommonJS project alike)
import { readFileSync } from "node:fs";
import { Sam2Client, segmentImage } from "@sam2/sdk";

const path = process.argv[2];
if (!path) throw new Error("usage: node client_example.js photo.jpg");
const apiKey = process.env.SAM2_API_KEY;
if (!apiKey) throw new Error("set SAM2_API_KEY to the key scripts/dev printed");
const baseUrl = process.env.SAM2_BASE_URL ?? "http://127.0.0.1:8080";

// A function rather than top-level await: this file runs as an ES module or as CommonJS
// (a project made by `npm init -y`), whichever the project compiles it to.
const main = async (): Promise<void> => {
  const client = new Sam2Client({ apiKey, baseUrl });
  const image = new Uint8Array(readFileSync(path));
  const click = await client.segment(image, { points: [[100, 50]], labels: [1] });
  const area = click.mask.reduce((sum, v) => sum + v, 0);
  console.log(`click: score ${click.score.toFixed(3)}, ${area} px of ${click.width}x${click.height}`);
  // A background point corrects the first mask (SAM2's mask_input) instead of starting over.
  const again = await client.segment(image, { points: [[100, 50], [20, 20]], labels: [1, 0], refine: click.maskId });
  console.log(`refining click reused the embedding: ${again.cached}`);
  const auto = await client.segmentAuto(image, { points_per_side: 4 });
  console.log(`auto: ${auto.masks.length} masks`);
  const original = await segmentImage(new Blob([image]), { endpointUrl: baseUrl, pointCoords: [[100, 50]], pointLabels: [1], apiKey });
  console.log(`segmentImage (original helper): mask ${(original.mask as unknown[]).length} rows`);
};

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
