// The playground in headless Chromium (Debian's, driven by playwright-core; no browser
// download), against a running local stack: node e2e.mjs <gateway url> <image> <artifacts dir>
import { chromium } from "playwright-core";

const [url, image, artifacts] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const report = {};
// A request's fields: its JSON body, or a multipart upload's `request` part (marked multipart).
const fieldsOf = (request) => {
  if (!(request.headers()["content-type"] ?? "").startsWith("multipart/form-data")) return request.postDataJSON();
  const text = request.postDataBuffer()?.toString("latin1") ?? "";
  const part = text.match(/name="request"\r\n(?:[^\r]+\r\n)*\r\n([^\r]*)\r\n/);
  return { ...(part ? JSON.parse(part[1]) : {}), multipart: true };
};
try {
  const page = await browser.newPage({ viewport: { width: 1000, height: 800 } });
  const sent = [];
  page.on("request", (request) => {
    if (request.url().endsWith("/v1/segment")) sent.push(fieldsOf(request));
  });
  const answers = [];
  page.on("response", async (response) => {
    if (response.url().endsWith("/v1/segment")) answers.push(await response.json().catch(() => ({})));
  });
  await page.goto(`${url}/playground/`);
  await page.setInputFiles('input[type="file"]', image);
  const overlay = page.getByTestId("overlay");
  await overlay.waitFor();
  const status = page.getByTestId("status");
  const box = await overlay.boundingBox();
  await overlay.click({ position: { x: box.width * 0.5, y: box.height * 0.5 } });
  await status.filter({ hasText: "embedding computed" }).waitFor({ timeout: 120_000 });
  report.first = await status.textContent();
  report.maskPixels = await page.evaluate(() => {
    const canvas = document.querySelector('[data-testid="overlay"]');
    const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    let count = 0;
    for (let i = 0; i < data.length; i += 4) if (data[i] === 30 && data[i + 1] === 144 && data[i + 2] === 255 && data[i + 3] > 0) count += 1;
    return count;
  });
  await page.screenshot({ path: `${artifacts}/1-first-click.png` });
  await overlay.click({ position: { x: box.width * 0.3, y: box.height * 0.3 }, modifiers: ["Shift"] });
  await status.filter({ hasText: "embedding cached" }).waitFor({ timeout: 60_000 });
  report.second = await status.textContent();
  await page.screenshot({ path: `${artifacts}/2-second-click.png` });
  // Polygons and the rendered overlay of the shown mask, asked of the API again by image_id.
  for (const [button, name] of [[/Download polygons/, "polygons"], [/Download overlay/, "overlay"]]) {
    const download = page.waitForEvent("download", { timeout: 60_000 });
    await page.getByRole("button", { name: button }).click();
    const file = await download;
    await file.saveAs(`${artifacts}/${file.suggestedFilename()}`);
    report[name] = file.suggestedFilename();
  }
  await page.getByRole("button", { name: /Segment everything/ }).click();
  await status.filter({ hasText: / masks · / }).waitFor({ timeout: 300_000 });
  report.auto = await status.textContent();
  await page.screenshot({ path: `${artifacts}/3-auto.png`, fullPage: true });
  report.alerts = await page.getByRole("alert").count();
  // The second click refines the first answer's mask.
  report.refine = sent.slice(0, 2).map((body) => body.refine ?? null);
  report.multipart = sent.slice(0, 2).map((body) => body.multipart === true);
  report.maskIds = answers.slice(0, 2).map((answer) => answer.mask_id ?? null);
} finally {
  await browser.close();
}
console.log(JSON.stringify(report));
