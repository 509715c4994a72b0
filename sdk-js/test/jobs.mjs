// Run by tests/sdk/test_js_jobs.py against the real local gateway: a batch job through the
// built SDK (two uploaded images and one never uploaded), created twice with one idempotency
// key, waited for; prints the job ids, its counts and each result (masks as 0/1 characters).
import { readFileSync } from "node:fs";
import { Sam2Client } from "../dist/index.js";

const client = new Sam2Client({ apiKey: process.env.SAM2_API_KEY, baseUrl: process.env.SAM2_BASE_URL });
const images = process.argv.slice(2).map((path) => new Uint8Array(readFileSync(path)));
const ids = [];
for (const image of images) ids.push((await client.segment(image, { points: [[40, 30]] })).imageId);
const request = { point_coords: [[40, 30]], point_labels: [1] };
const items = [...ids, `img_${"c".repeat(32)}`];
const job = await client.jobs.create(items, { request, idempotencyKey: "js-run-1" });
const again = await client.jobs.create(items, { request, idempotencyKey: "js-run-1" });
const done = await client.jobs.wait(job.job_id, { pollMs: 200, timeoutMs: 120_000 });
const results = [];
for await (const [index, result] of client.jobs.results(job.job_id)) {
  results.push("mask" in result ? { index, mask: Array.from(result.mask).join(""), score: result.score } : { index, ...result });
}
let refused = null;
try {
  await client.jobs.create(["photo.jpg"], { request });
} catch (error) {
  refused = error.message;
}
console.log(JSON.stringify({ jobIds: [job.job_id, again.job_id], counts: done.counts, state: done.state, results, refused, listed: (await client.jobs.list()).map((j) => j.job_id) }));
