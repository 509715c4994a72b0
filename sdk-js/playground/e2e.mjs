// The playground in headless Chromium (e2e-support.mjs), against a running local stack, on a desktop and on a 390 px phone, light and dark:
//   node e2e.mjs <gateway url> <gateway url whose inference is down> <image> <too-large image> <artifacts dir>
// Prints one JSON report of what a user would see; the pytest asserts on it.
import { axe, launch } from "./e2e-support.mjs";

const [url, downUrl, image, tooLarge, artifacts] = process.argv.slice(2);
const browser = await launch();
const report = {};
const LONG = 300_000;
const MASK = [30, 144, 255]; // the first mask's colour
const FOREGROUND = [0, 200, 83];
const BACKGROUND = [255, 23, 68];
const BOX = [255, 214, 0];
const CURSOR = [213, 0, 249];

// A request's fields: its JSON body, or, for a multipart upload (whose body Chromium does not
// hand over), just the mark `multipart`.
const fieldsOf = (request) => {
  if (!(request.headers()["content-type"] ?? "").startsWith("multipart/form-data")) return request.postDataJSON();
  const text = request.postDataBuffer()?.toString("latin1") ?? "";
  const part = text.match(/name="request"\r\n(?:[^\r]+\r\n)*\r\n([^\r]*)\r\n/);
  return { ...(part ? JSON.parse(part[1]) : {}), multipart: true };
};
// Every /v1/segment request and answer a page makes.
const watch = (page) => {
  const traffic = { sent: [], answers: [] };
  page.on("request", (request) => request.url().endsWith("/v1/segment") && traffic.sent.push(fieldsOf(request)));
  page.on("response", async (response) => response.url().endsWith("/v1/segment") && traffic.answers.push(await response.json().catch(() => ({}))));
  return traffic;
};
// Overlay pixels of one colour (any opacity): what a user sees drawn in it.
const pixels = (page, [r, g, b]) =>
  page.evaluate(([r, g, b]) => {
    const canvas = document.querySelector('[data-testid="overlay"]');
    const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    let count = 0;
    for (let i = 0; i < data.length; i += 4) if (Math.abs(data[i] - r) < 3 && Math.abs(data[i + 1] - g) < 3 && Math.abs(data[i + 2] - b) < 3 && data[i + 3] > 0) count += 1;
    return count;
  }, [r, g, b]);
const stageBox = async (page) => {
  const box = await page.locator(".stage").boundingBox();
  return [Math.round(box.x), Math.round(box.y), Math.round(box.width), Math.round(box.height)];
};
// Phones: the viewport only, since a full-page screenshot in Chromium's mobile emulation drops the
// touch emulation while it is taken (the page then matches `pointer: fine` and shows key badges).
const shot = (page, name, fullPage = true) => page.screenshot({ path: `${artifacts}/${name}.png`, fullPage });
// A download's file, kept as <step>-<the name the page gave it>.
const download = async (page, name, step) => {
  const waiting = page.waitForEvent("download", { timeout: 60_000 });
  await page.getByRole("button", { name }).click();
  const file = await waiting;
  const kept = `${step}-${file.suggestedFilename()}`;
  await file.saveAs(`${artifacts}/${kept}`);
  return kept;
};
const alertText = async (page) => {
  const alert = page.getByRole("alert").first();
  await alert.waitFor({ timeout: 60_000 });
  return alert.textContent();
};

try {
  // ---- Desktop, light ----
  const desktop = await browser.newContext({ viewport: { width: 1280, height: 860 }, colorScheme: "light" });
  const page = await desktop.newPage();
  const traffic = watch(page);
  await page.goto(`${url}/playground/?decode=server`);
  const badge = page.getByTestId("badge");
  await badge.filter({ hasText: "weights" }).waitFor({ timeout: 60_000 });
  report.badge = await badge.textContent();
  report.axeEmpty = await axe(page);
  await shot(page, "1-desktop-empty");

  // A corrupt file: said in words, nothing sent.
  await page.setInputFiles('input[type="file"]', { name: "broken.png", mimeType: "image/png", buffer: Buffer.from("this is not a picture") });
  report.corrupt = await alertText(page);
  report.corruptRequests = traffic.sent.length;

  // A wrong key: said at once; then back to the development token.
  await page.getByText("API key", { exact: true }).click();
  await page.getByLabel("API key").fill("sam2_this_is_not_a_key");
  await page.getByRole("button", { name: "Use key" }).click();
  report.badKey = await page.locator(".key .alert").textContent();
  await page.getByLabel("API key").fill("");
  await page.getByRole("button", { name: "Use key" }).click();
  report.devToken = await page.locator(".key .ok").textContent();
  await page.getByText("API key", { exact: true }).click();

  // Upload and click: the mask and a ringed marker drawn; the stage does not move.
  await page.setInputFiles('input[type="file"]', image);
  const overlay = page.getByTestId("overlay");
  await overlay.waitFor();
  report.stage = [await stageBox(page)];
  const status = page.getByTestId("status");
  const box = await overlay.boundingBox();
  await overlay.click({ position: { x: box.width * 0.5, y: box.height * 0.5 } });
  await status.filter({ hasText: "embedding computed" }).waitFor({ timeout: 120_000 });
  report.first = await status.textContent();
  report.stage.push(await stageBox(page));
  report.maskPixels = await pixels(page, MASK);
  report.foregroundPixels = await pixels(page, FOREGROUND);
  report.badgeAfter = await badge.textContent();
  report.masksHelp = await page.getByTestId("masks-help").textContent();
  report.desktopKeyBadges = await page.locator("kbd:visible").count();
  await shot(page, "2-desktop-click");

  // Shift+click: a background point refining the first mask, on the cached embedding.
  await overlay.click({ position: { x: box.width * 0.3, y: box.height * 0.3 }, modifiers: ["Shift"] });
  await status.filter({ hasText: "embedding cached" }).waitFor({ timeout: 60_000 });
  report.second = await status.textContent();
  report.refine = [traffic.sent[1]?.refine ?? null, traffic.answers[0]?.mask_id ?? null];
  report.backgroundPixels = await pixels(page, BACKGROUND);

  // A box: drawn while dragging, asked for on release.
  await page.keyboard.press("c");
  await page.mouse.move(box.x + box.width * 0.2, box.y + box.height * 0.2);
  await page.mouse.down();
  await page.mouse.move(box.x + box.width * 0.5, box.y + box.height * 0.5, { steps: 4 });
  await page.mouse.move(box.x + box.width * 0.75, box.y + box.height * 0.7, { steps: 4 });
  report.dragPixels = await pixels(page, BOX);
  report.sentWhileDragging = traffic.sent.length;
  await shot(page, "3-desktop-box-drag");
  const boxAnswer = page.waitForResponse((r) => r.url().endsWith("/v1/segment"));
  await page.mouse.up();
  await boxAnswer;
  await status.filter({ hasText: "score" }).waitFor({ timeout: 60_000 });
  report.boxSent = traffic.sent.at(-1).box_coords ?? null;
  report.boxAnswered = traffic.answers.length === traffic.sent.length;
  report.multipart = traffic.sent.map((body) => body.multipart === true);

  // Exports of the shown mask: PNG, COCO (one annotation), and the API's polygons and overlay.
  report.downloads = {};
  for (const [key, name] of [["png", "Download mask PNG"], ["coco", "Download COCO JSON"], ["polygons", "Download polygons"], ["overlay", "Download overlay PNG"]]) {
    report.downloads[key] = await download(page, name, "box");
  }

  // Keyboard only: the picture takes the focus (Tab order), the arrows move a cursor, Enter
  // adds a point there, X ... X draws a box; nothing needs a pointer.
  await page.keyboard.press("c");
  report.stageTabIndex = await overlay.getAttribute("tabindex");
  await overlay.focus();
  report.cursorPixels = await pixels(page, CURSOR);
  for (const key of ["ArrowRight", "ArrowRight", "ArrowRight", "ArrowDown", "ArrowDown"]) await page.keyboard.press(key);
  let keyed = page.waitForResponse((r) => r.url().endsWith("/v1/segment"));
  await page.keyboard.press("Enter");
  await keyed;
  report.keyboardPoint = [traffic.sent.at(-1).point_coords, traffic.sent.at(-1).point_labels];
  await page.keyboard.press("x");
  await page.keyboard.press("Shift+ArrowLeft");
  await page.keyboard.press("Shift+ArrowUp");
  report.keyboardDraftPixels = await pixels(page, BOX);
  report.sentWhileKeyboardBox = traffic.sent.length;
  keyed = page.waitForResponse((r) => r.url().endsWith("/v1/segment"));
  await page.keyboard.press("x");
  await keyed;
  report.sentAfterKeyboardBox = traffic.sent.length;
  report.keyboardBox = traffic.sent.at(-1).box_coords ?? null;
  await status.filter({ hasText: "score" }).waitFor({ timeout: 60_000 });
  await shot(page, "3b-desktop-keyboard");
  await overlay.blur();

  // Several objects: N keeps the shown mask as object 1 and starts the next; a click elsewhere
  // is the next object alone (its own prompt, no refine); COCO has one annotation for each;
  // the kept one can be removed.
  const kept = page.getByRole("list", { name: "kept objects" });
  await page.keyboard.press("n");
  report.keptListed = await kept.getByRole("listitem").count();
  report.keptNotice = await page.getByTestId("notice").textContent();
  const nextObject = page.waitForResponse((r) => r.url().endsWith("/v1/segment"));
  await overlay.click({ position: { x: box.width * 0.8, y: box.height * 0.8 } });
  await nextObject;
  await status.filter({ hasText: "score" }).waitFor({ timeout: 60_000 });
  report.nextObjectSent = traffic.sent.at(-1);
  report.keyboardCursorAfterClick = await pixels(page, CURSOR);
  await shot(page, "3c-desktop-two-objects");
  report.downloads.objectsCoco = await download(page, "Download COCO JSON", "objects");
  await page.getByRole("button", { name: "remove object 1" }).click();
  report.keptAfterRemove = await kept.count();

  // Segment everything, cancelled: elapsed time shown, the server told, the last mask kept.
  // Long enough to cancel on a CPU (tens of seconds), yet under the work the server admits.
  await page.getByLabel("Grid (points per side)").fill("16");
  await page.getByRole("button", { name: /Segment everything/ }).click();
  const elapsed = page.getByTestId("elapsed");
  await elapsed.filter({ hasText: /everything… [1-9]/ }).waitFor({ timeout: 30_000 });
  report.elapsed = await elapsed.textContent();
  await shot(page, "4-desktop-auto-running");
  await page.getByRole("button", { name: /Cancel/ }).click();
  report.cancelled = await page.getByTestId("notice").textContent();
  report.afterCancel = await status.textContent();
  // ...and once more, stopped by a click, which is answered instead.
  await page.getByRole("button", { name: /Segment everything/ }).click();
  await elapsed.filter({ hasText: /everything…/ }).waitFor();
  const before = traffic.answers.length;
  await overlay.click({ position: { x: box.width * 0.6, y: box.height * 0.4 } });
  report.clickNotice = await page.getByTestId("notice").textContent();
  await status.filter({ hasText: "score" }).waitFor({ timeout: 60_000 });
  await page.waitForFunction(() => document.querySelector('[data-testid="elapsed"]') === null);
  report.clickAnswered = traffic.answers.slice(before).map((a) => ("masks" in a && "count" in a ? "auto" : "click"));

  // Segment everything to the end on a small grid: masks, or why there are none and a way out.
  await page.getByLabel("Grid (points per side)").fill("4");
  await page.getByRole("button", { name: /Segment everything/ }).click();
  await status.filter({ hasText: / masks · / }).waitFor({ timeout: LONG });
  report.auto = await status.textContent();
  report.empty = (await page.getByTestId("empty").count()) ? await page.getByTestId("empty").textContent() : null;
  if (report.empty) {
    await page.getByRole("button", { name: /Run again with both thresholds at 0/ }).click();
    await status.filter({ hasText: /^[1-9]\d* masks · / }).waitFor({ timeout: LONG });
  }
  report.autoMasks = Number((await status.textContent()).split(" ")[0]);
  report.autoSent = traffic.sent.at(-1);
  report.downloads.autoCoco = await download(page, "Download COCO JSON", "auto");
  report.axeResults = await axe(page);
  await shot(page, "5-desktop-auto");

  // Dark mode: the same page in the dark palette, and still legible.
  await page.emulateMedia({ colorScheme: "dark" });
  report.darkBackground = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  report.axeDark = await axe(page);
  await shot(page, "6-desktop-dark");
  await page.emulateMedia({ colorScheme: "light" });

  // Clear: the stage stays where it was.
  await page.keyboard.press("c");
  report.stage.push(await stageBox(page));

  // Limits: a picture over the server's pixel limit, said in words.
  await page.setInputFiles('input[type="file"]', tooLarge);
  await overlay.waitFor();
  await overlay.click({ position: { x: 20, y: 20 } });
  report.limit = await alertText(page);
  await shot(page, "7-desktop-limit");

  // Outage: a gateway whose model service is down.
  const down = await desktop.newPage();
  await down.goto(`${downUrl}/playground/?decode=server`);
  await down.setInputFiles('input[type="file"]', image);
  await down.getByTestId("overlay").click({ position: { x: 30, y: 30 } });
  report.outage = await alertText(down);
  await shot(down, "8-desktop-outage");
  await desktop.close();

  // ---- Phone, 390 px, touch ----
  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
  const mobile = await phone.newPage();
  const onPhone = watch(mobile);
  await mobile.goto(`${url}/playground/?decode=server`);
  await mobile.setInputFiles('input[type="file"]', image);
  const small = mobile.getByTestId("overlay");
  await small.waitFor();
  // Where on the screen a fraction of the stage is now (measured before every gesture).
  const spot = async (fx, fy) => {
    const rect = await small.boundingBox();
    return { x: rect.x + rect.width * fx, y: rect.y + rect.height * fy };
  };
  const rect = await small.boundingBox();
  report.phoneStage = [Math.round(rect.width), Math.round(rect.height)];
  report.phoneStageY = [Math.round(rect.y)];
  const phoneStatus = mobile.getByTestId("status");
  const first = await spot(0.5, 0.5);
  await mobile.touchscreen.tap(first.x, first.y);
  await phoneStatus.filter({ hasText: "score" }).waitFor({ timeout: 120_000 });
  report.phoneStageY.push(Math.round((await small.boundingBox()).y));
  // A tap is no keyboard use: no keyboard cursor, no keyboard hint, no key badges.
  report.phoneCursorPixels = await pixels(mobile, CURSOR);
  report.phoneHint = await mobile.locator(".activity").textContent();
  report.phoneKeyBadges = await mobile.locator("kbd:visible").count();
  report.phoneKeyRows = await mobile.locator(".shortcuts .keys:visible").count();
  // A long press: a background point.
  const cdp = await phone.newCDPSession(mobile);
  const at = await spot(0.25, 0.25);
  const pressed = mobile.waitForResponse((r) => r.url().endsWith("/v1/segment"));
  await cdp.send("Input.dispatchTouchEvent", { type: "touchStart", touchPoints: [at] });
  await mobile.waitForTimeout(800);
  await cdp.send("Input.dispatchTouchEvent", { type: "touchEnd", touchPoints: [] });
  await pressed;
  // The Background tool: a tap is a background point too.
  await mobile.getByRole("button", { name: /Background/ }).tap();
  const third = await spot(0.75, 0.25);
  const tapped = mobile.waitForResponse((r) => r.url().endsWith("/v1/segment"));
  await mobile.touchscreen.tap(third.x, third.y);
  await tapped;
  await phoneStatus.filter({ hasText: "embedding cached" }).waitFor({ timeout: 60_000 });
  report.phoneStatus = await phoneStatus.textContent();
  report.phoneLabels = onPhone.sent.map((s) => s.point_labels);
  report.phoneOverflow = await mobile.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  report.axePhone = await axe(mobile);
  await shot(mobile, "9-phone", false);
  await mobile.emulateMedia({ colorScheme: "dark" });
  await shot(mobile, "10-phone-dark", false);
  await phone.close();
} catch (failure) {
  // What the page showed when a step failed, for whoever reads the CI artifacts.
  const pages = browser.contexts().flatMap((context) => context.pages());
  await Promise.all(pages.map((open, i) => open.screenshot({ path: `${artifacts}/failed-${i}.png`, fullPage: true }).catch(() => undefined)));
  console.error(JSON.stringify(report));
  throw failure;
} finally {
  await browser.close();
}
console.log(JSON.stringify(report));
