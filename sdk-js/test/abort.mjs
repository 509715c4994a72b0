// Run by tests/sdk/test_cancellation.py against the real local gateway: an automatic-mode call
// aborted after a second, through the built SDK; prints the error's name.
import { readFileSync } from "node:fs";
import { Sam2Client } from "../dist/index.js";

const client = new Sam2Client({ apiKey: process.env.SAM2_API_KEY, baseUrl: process.env.SAM2_BASE_URL });
const image = new Uint8Array(readFileSync(process.argv[2]));
const controller = new AbortController();
setTimeout(() => controller.abort(), 1000);
const knobs = { points_per_side: 8, points_per_batch: 4, pred_iou_thresh: 0, stability_score_thresh: 0 };
const outcome = await client.segmentAuto(image, knobs, { signal: controller.signal }).then(
  () => "finished",
  (error) => error.name,
);
console.log(outcome);
