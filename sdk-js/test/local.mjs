// Run by tests/sdk/test_js_local.py against the real local gateway: the built SDK's
// @sam2/sdk/local with onnxruntime-web's WASM in Node. argv: an image file, a JSON file of
// prompts (tests/support.random_prompts: `refine: true` is the previous answer's maskId), and
// the embedding dtype. Prints each answer's mask as 0/1 characters, its scores, and what the
// session downloaded; then a damaged embedding's error.
import { readFileSync } from "node:fs";
import { Sam2Client } from "../dist/index.js";
import { LocalSession, parseEmbedding } from "../dist/local/index.js";

const [imageFile, promptsFile, dtype] = process.argv.slice(2);
const requests = [];
const countingFetch = (url, init) => {
  requests.push(new URL(url).pathname);
  return fetch(url, init);
};
const client = new Sam2Client({ apiKey: process.env.SAM2_API_KEY, baseUrl: process.env.SAM2_BASE_URL, fetch: countingFetch });
const image = new Uint8Array(readFileSync(imageFile));
const progress = [];
const local = await LocalSession.start(client, image, { dtype, onProgress: (p) => progress.push(p) });
const before = requests.length;
const answers = [];
for (const prompt of JSON.parse(readFileSync(promptsFile, "utf8"))) {
  const refine = prompt.refine ? answers.at(-1).maskId : undefined;
  const answer = await local.segment({ ...prompt, refine });
  answers.push(answer);
}
const duringClicks = requests.length - before;
const again = await LocalSession.start(client, image, { dtype });
const embedding = await client.file(`/v1/images/${local.imageId}/embedding?dtype=${dtype}`);
const damaged = embedding.bytes.slice();
damaged[damaged.length - 10] ^= 0xff;
const errors = [];
for (const file of [damaged, embedding.bytes.subarray(0, 1000)]) {
  await parseEmbedding(file).then(
    () => errors.push(null),
    (error) => errors.push({ name: error.name, message: error.message }),
  );
}
console.log(
  JSON.stringify({
    backend: local.backend,
    shape: [local.height, local.width],
    answers: answers.map((a) => ({ mask: Array.from(a.mask).join(""), score: a.score, allScores: a.allScores, warnings: a.warnings })),
    requestsDuringClicks: duringClicks,
    firstSession: requests.slice(0, before),
    decoderAgain: requests.slice(before).filter((path) => path.endsWith("decoder.onnx")).length,
    againShape: [again.height, again.width],
    progress: { embedding: progress.filter((p) => p.file === "embedding").at(-1), decoder: progress.filter((p) => p.file === "decoder").at(-1), events: progress.length },
    errors,
  }),
);
await local.close();
