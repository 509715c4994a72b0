// Run by tests/sdk/test_js_contract.py against the real local gateway: a click on one image and
// a correcting click that refines its mask, then two objects in one call, through the built SDK,
// printing the masks, how many bytes each request carried, and the key's usage report.
import { readFileSync } from "node:fs";
import { Sam2Client } from "../dist/index.js";

const sent = [];
const countingFetch = async (url, init) => {
  const body = init?.body instanceof FormData ? await new Response(init.body).arrayBuffer() : init?.body;
  sent.push(body ? (body.byteLength ?? body.length) : 0);
  return fetch(url, init);
};
const client = new Sam2Client({
  apiKey: process.env.SAM2_API_KEY,
  baseUrl: process.env.SAM2_BASE_URL,
  fetch: countingFetch,
});
const image = new Uint8Array(readFileSync(process.argv[2]));
const first = await client.segment(image, { points: [[100, 50]], labels: [1] });
const second = await client.segment(image, { points: [[100, 50], [30, 30]], labels: [1, 0], refine: first.maskId });
const objects = await client.segment(image, { objects: [{ points: [[100, 50]] }, { box: [10, 10, 90, 90] }], render: "png" });
const usage = await client.usage({ days: 1 });
console.log(
  JSON.stringify({
    mask: Array.from(first.mask).join(""),
    width: first.width,
    height: first.height,
    refined: Array.from(second.mask).join(""),
    maskIds: [first.maskId, second.maskId],
    objects: objects.masks.map((mask) => Array.from(mask).join("")),
    objectMaskIds: objects.boxMaskIds,
    overlay: objects.overlay,
    cached: [first.cached, second.cached],
    sent,
    usage,
  }),
);
