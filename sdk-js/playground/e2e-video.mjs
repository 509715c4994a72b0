// The playground's video view in headless Chromium (e2e-support.mjs),
// against a running local stack: node e2e-video.mjs <gateway url> <artifacts dir> <frame>...
import { axe, launch } from "./e2e-support.mjs";

const [url, artifacts, ...frames] = process.argv.slice(2);
const browser = await launch();
const report = {};
// Pixels of object 1's colour on the overlay canvas (what a user sees as its mask).
const painted = (page) =>
  page.evaluate(() => {
    const canvas = document.querySelector('[data-testid="video-overlay"]');
    const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    let count = 0;
    for (let i = 0; i < data.length; i += 4) if (data[i] === 30 && data[i + 1] === 144 && data[i + 2] === 255 && data[i + 3] > 0) count += 1;
    return count;
  });
try {
  const page = await browser.newPage({ viewport: { width: 1000, height: 800 } });
  await page.goto(`${url}/playground/`);
  await page.getByRole("button", { name: "Video" }).click();
  // Before any clip: what the view does, and a sample clip made in the page.
  report.intro = await page.getByTestId("video-intro").textContent();
  await page.getByRole("button", { name: /Try a sample clip/ }).click();
  await page.getByTestId("video-status").filter({ hasText: "frame 1 / 12" }).waitFor({ timeout: 180_000 });
  report.sample = await page.getByTestId("video-status").textContent();
  await page.setInputFiles('section[aria-label="video"] input[type="file"]', frames);
  const status = page.getByTestId("video-status");
  await status.filter({ hasText: `frame 1 / ${frames.length}` }).waitFor({ timeout: 180_000 });
  const overlay = page.getByTestId("video-overlay");
  const box = await overlay.boundingBox();
  await overlay.click({ position: { x: box.width * 0.5, y: box.height * 0.5 } });
  await status.filter({ hasText: "1 frames with masks" }).waitFor({ timeout: 120_000 });
  report.clicked = await status.textContent();
  report.firstPixels = await painted(page);
  await page.screenshot({ path: `${artifacts}/video-1-click.png` });
  await page.getByRole("button", { name: "Propagate" }).click();
  await status.filter({ hasText: `${frames.length} frames with masks` }).waitFor({ timeout: 300_000 });
  await status.filter({ hasNotText: "propagating" }).waitFor({ timeout: 300_000 });
  report.progress = await page.getByRole("progressbar", { name: "propagation" }).evaluate((bar) => [bar.value, bar.max]);
  await page.getByRole("slider", { name: "frame" }).fill(String(frames.length - 1));
  await page.getByAltText(`frame ${frames.length}`).waitFor();
  report.last = await status.textContent();
  report.lastPixels = await painted(page);
  await page.screenshot({ path: `${artifacts}/video-2-last-frame.png` });
  const download = page.waitForEvent("download", { timeout: 60_000 });
  await page.getByRole("button", { name: /Export masks/ }).click();
  const file = await download;
  await file.saveAs(`${artifacts}/${file.suggestedFilename()}`);
  report.export = file.suggestedFilename();
  report.alerts = await page.getByRole("alert").count();
  report.axe = await axe(page);
} finally {
  await browser.close();
}
console.log(JSON.stringify(report));
