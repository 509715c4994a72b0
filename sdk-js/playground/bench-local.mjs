// Run by bench/local_decode.py: the playground in headless Chromium against a running stack,
// with an API key pasted, timing what a user waits for:
//   node bench-local.mjs <gateway url> <api key> <image> <clicks>
// Prints JSON: ms from choosing the file to the decoder being ready, each local click's ms and
// each server click's ms as the page measured them (useSegmenter's `last.ms`), the WASM threads.
import { launch } from "./e2e-support.mjs";

const [url, key, image, count] = process.argv.slice(2);
const clicks = Number(count);
const browser = await launch();
const at = (i) => [0.1 + 0.8 * (((i * 37) % 97) / 97), 0.1 + 0.8 * (((i * 61) % 89) / 89)];
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await page.goto(`${url}/playground/`);
  await page.getByText("API key", { exact: true }).click();
  await page.getByLabel("API key").fill(key);
  await page.getByRole("button", { name: "Use key" }).click();
  await page.locator(".key .ok").waitFor({ timeout: 30_000 });
  const chosen = Date.now();
  await page.setInputFiles('input[type="file"]', image);
  await page.getByTestId("decoder").filter({ hasText: "decoded in this browser" }).waitFor({ timeout: 300_000 });
  const readyMs = Date.now() - chosen;
  const time = async () => {
    const overlay = page.getByTestId("overlay");
    const box = await overlay.boundingBox();
    const out = [];
    for (let i = 0; i < clicks; i += 1) {
      await page.evaluate(() => document.querySelector('[data-testid="where"]')?.setAttribute("data-old", ""));
      const [x, y] = at(i);
      await overlay.click({ position: { x: box.width * x, y: box.height * y } });
      const where = page.locator('[data-testid="where"]:not([data-old])');
      await where.waitFor({ timeout: 60_000 });
      out.push({ text: await where.textContent() });
      await page.getByRole("button", { name: "Clear" }).click();
    }
    return out.map(({ text }) => ({ local: text.startsWith("Decoded in this browser"), ms: Number(text.match(/in (\d+) ms/)[1]) }));
  };
  const local = await time();
  await page.getByRole("button", { name: "Server", exact: true }).click();
  const server = await time();
  const threads = await page.evaluate(() => ({ isolated: crossOriginIsolated, cores: navigator.hardwareConcurrency }));
  console.log(JSON.stringify({ readyMs, local, server, threads }));
} finally {
  await browser.close();
}
