// The playground decoding clicks in the browser (issue 29), in headless Chromium (onnxruntime-web's
// WASM) against a running local stack:
//   node e2e-local.mjs <gateway url> <image> <artifacts dir>
// Prints one JSON report of what a user would see and what the page sent; the pytest asserts on it.
import { launch } from "./e2e-support.mjs";

const [url, image, artifacts] = process.argv.slice(2);
const browser = await launch();
const report = {};
const CANDIDATES = [[30, 144, 255], [255, 99, 71], [50, 205, 50]]; // the three candidates' colours (colours.ts)
const LONG = 240_000;

// Overlay pixels drawn in any of the candidates' colours (any opacity).
const painted = (page) =>
  page.evaluate((colours) => {
    const canvas = document.querySelector('[data-testid="overlay"]');
    const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    const counts = colours.map(() => 0);
    for (let i = 0; i < data.length; i += 4) {
      if (!data[i + 3]) continue;
      colours.forEach(([r, g, b], k) => {
        if (Math.abs(data[i] - r) < 3 && Math.abs(data[i + 1] - g) < 3 && Math.abs(data[i + 2] - b) < 3) counts[k] += 1;
      });
    }
    return counts;
  }, CANDIDATES);
const shot = (page, name) => page.screenshot({ path: `${artifacts}/${name}.png`, fullPage: true });
const segmentCalls = (page) => {
  const calls = [];
  page.on("request", (request) => {
    const path = new URL(request.url()).pathname;
    if (path.startsWith("/v1/")) calls.push(path);
  });
  return calls;
};
// Click at fractions of the picture and wait for its answer's line, where it was answered (the
// page draws that line anew for each answer: the old one is marked, and waited to go).
const click = async (page, at, options = {}) => {
  const overlay = page.getByTestId("overlay");
  const box = await overlay.boundingBox();
  await page.evaluate(() => document.querySelector('[data-testid="where"]')?.setAttribute("data-old", ""));
  await overlay.click({ position: { x: box.width * at[0], y: box.height * at[1] }, ...options });
  const where = page.locator('[data-testid="where"]:not([data-old])');
  await where.waitFor({ timeout: 60_000 });
  await page.locator('progress[aria-label="working"]').waitFor({ state: "detached" });
  return { where: await where.textContent(), painted: await painted(page) };
};

const pages = [];
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  pages.push(page);
  const calls = segmentCalls(page);
  await page.goto(`${url}/playground/`);
  report.isolated = await page.evaluate(() => crossOriginIsolated); // WASM threads allowed
  report.choice = await page.getByRole("group", { name: "decode clicks in" }).textContent();
  report.choicePressed = await page.getByRole("button", { name: "This browser", exact: true }).getAttribute("aria-pressed");
  await page.setInputFiles('input[type="file"]', image);
  await page.getByTestId("overlay").waitFor();
  // The downloads' progress, as the page says it, until the decoder is ready.
  const decoder = page.getByTestId("decoder");
  const seen = new Set();
  const deadline = Date.now() + LONG;
  for (;;) {
    const text = (await decoder.textContent()) ?? "";
    seen.add(text.replace(/\d+%/, "N%"));
    if (text.includes("decoded in this browser") || text.includes("failed") || Date.now() > deadline) break;
    if (text.includes("downloading the embedding") && !report.progressShot) {
      report.progressShot = true;
      await shot(page, "1-local-downloading");
    }
    await page.waitForTimeout(20);
  }
  report.decoderStates = [...seen];
  report.ready = await decoder.textContent();
  report.startCalls = [...calls];

  // Clicks, a background click refining the mask, and a box: answered here, nothing sent.
  const first = calls.length;
  report.clicks = [];
  report.clicks.push(await click(page, [0.5, 0.5]));
  await shot(page, "2-local-click");
  report.clicks.push(await click(page, [0.3, 0.3], { modifiers: ["Shift"] }));
  report.clicks.push(await click(page, [0.7, 0.6]));
  report.clicks.push(await click(page, [0.2, 0.7]));
  report.callsDuringClicks = calls.slice(first);
  await shot(page, "3-local-refined");

  // Polygons of the locally refined mask: the server is asked the same chain of prompts.
  const waiting = page.waitForEvent("download", { timeout: 60_000 });
  await page.getByRole("button", { name: "Download polygons" }).click();
  const file = await waiting;
  await file.saveAs(`${artifacts}/local-polygons.json`);
  report.polygons = `${artifacts}/local-polygons.json`;
  report.polygonCalls = calls.slice(first + report.callsDuringClicks.length);

  // The same clicks answered by the server: the same masks painted.
  await page.getByRole("button", { name: "Clear" }).click();
  await page.getByRole("button", { name: "Server", exact: true }).click();
  await decoder.filter({ hasText: "on the server" }).waitFor();
  report.serverChoice = await decoder.textContent();
  const server = [];
  server.push(await click(page, [0.5, 0.5]));
  server.push(await click(page, [0.3, 0.3], { modifiers: ["Shift"] }));
  server.push(await click(page, [0.7, 0.6]));
  server.push(await click(page, [0.2, 0.7]));
  report.server = server;
  await shot(page, "4-server-click");

  // A decoder that cannot be fetched: the page says why, and the server answers the clicks.
  const broken = await context.newPage();
  pages.push(broken);
  broken.on("console", (message) => console.error(`console: ${message.text()}`));
  await broken.route("**/decoder.onnx", (route) => route.abort());
  await broken.goto(`${url}/playground/`);
  await broken.setInputFiles('input[type="file"]', image);
  await broken.getByTestId("overlay").waitFor();
  await broken.getByTestId("decoder").filter({ hasText: "failed" }).waitFor({ timeout: LONG });
  report.fallback = await broken.getByTestId("decoder").textContent();
  report.fallbackClick = await click(broken, [0.5, 0.5]);
  await shot(broken, "5-local-fallback");
} catch (failure) {
  // What the page showed when it failed, for the pytest's message and a screenshot to look at.
  for (const [i, page] of pages.entries()) {
    await shot(page, `failed-${i}`).catch(() => undefined);
    console.error(`page ${i}: ${(await page.locator("aside").textContent().catch(() => "")) ?? ""}`);
  }
  throw failure;
} finally {
  await browser.close();
}
console.log(JSON.stringify(report));
