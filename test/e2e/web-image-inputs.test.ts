/**
 * The playground's file inputs and mask brush, and the prediction page's input pictures, in
 * real chromium against the real `sdserve serve` (tiny-random): a picture is chosen and
 * previewed, a mask is painted over it, the run uploads both through the Files API, and the
 * mask that reached the server is decoded here and compared with what was painted. Bad files
 * are refused in the form. Screenshots go to test-artifacts/web/.
 */
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import { decode, encode } from "fast-png";
import type { Page } from "playwright-core";
import { MAX_FILE_INPUT_BYTES } from "../../src/server/files/file-inputs.js";
import { REPO_ROOT } from "../helpers/fixtures.js";
import { type Browser, launchChromium, noChromium } from "./browser.js";
import { api, authHeaders, OTHER_TOKEN, type Sdserve, startSdserve, TOKEN } from "./server.js";

const ARTIFACTS = path.join(REPO_ROOT, "test-artifacts", "web");
const skip = noChromium;
const INPAINT = "stability-ai/stable-diffusion-inpainting";
const IMG2IMG = "stability-ai/stable-diffusion-img2img";
/** The picture painted over: 128 × 96, a gradient (so a wrong file or size shows). */
const W = 128;
const H = 96;

function gradientPng(width = W, height = H): Buffer {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3;
      data[i] = (x * 2) & 255;
      data[i + 1] = (y * 2) & 255;
      data[i + 2] = 90;
    }
  }
  return Buffer.from(encode({ width, height, data, channels: 3, depth: 8 }));
}

let server: Sdserve;
let browser: Browser;
let page: Page;
const pageErrors: string[] = [];

before(async () => {
  if (skip) return;
  mkdirSync(ARTIFACTS, { recursive: true });
  [server, browser] = await Promise.all([startSdserve(), launchChromium()]);
  page = browser.context.pages()[0] ?? (await browser.context.newPage());
  page.on("pageerror", (err) => pageErrors.push(err.message));
  page.setDefaultTimeout(60_000);
  await page.goto(`${server.url}/static/icon.svg`);
  await setToken(TOKEN);
});

after(async () => {
  await browser?.close();
  await server?.stop();
  assert.deepEqual(pageErrors, []);
});

/** The token the pages keep (as the token dialog stores it), or none. */
function setToken(token: string | null): Promise<unknown> {
  return page.evaluate(
    token === null
      ? `localStorage.removeItem("sdserve-token")`
      : `localStorage.setItem("sdserve-token", ${JSON.stringify(token)})`,
  );
}

const shot = (name: string) => page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });

/** The token's newest prediction, as the API has it. */
async function newestPrediction(): Promise<Record<string, unknown>> {
  const list = await api(server, "GET", "/v1/predictions", undefined, authHeaders());
  const first = (list.json["results"] as Record<string, unknown>[])[0];
  assert.ok(first);
  const full = await api(server, "GET", `/v1/predictions/${first["id"]}`, undefined, authHeaders());
  return full.json;
}

async function download(url: string, token = TOKEN): Promise<{ status: number; body: Buffer }> {
  const res = await fetch(url, { headers: { Authorization: `Bearer ${token}` } });
  return { status: res.status, body: Buffer.from(await res.arrayBuffer()) };
}

/** Drags the brush along y from x0 to x1, in the picture's pixels. */
async function paintLine(x0: number, x1: number, y: number): Promise<void> {
  const canvas = page.locator('[data-role="mask-canvas"]');
  const box = await canvas.boundingBox();
  assert.ok(box);
  const at = (x: number, yy: number) => [box.x + (x / W) * box.width, box.y + (yy / H) * box.height] as const;
  await page.mouse.move(...at(x0, y));
  await page.mouse.down();
  await page.mouse.move(...at(x1, y), { steps: 8 });
  await page.mouse.up();
}

let inpainted: Record<string, unknown>;

test("inpainting: choose a picture, see it, paint the mask, run; the server gets the picture and the painted mask", {
  skip,
}, async () => {
  await page.goto(`${server.url}/?model=${encodeURIComponent(INPAINT)}`);
  const image = gradientPng();
  await page
    .getByLabel("Image *", { exact: true })
    .setInputFiles({ name: "gradient.png", mimeType: "image/png", buffer: image });
  // The preview, at the picture's own size, named by the file.
  const thumb = page.locator('[data-file-input="image"] [data-role="thumb"]');
  await thumb.waitFor();
  assert.equal(await thumb.evaluate((img) => (img as unknown as { naturalWidth: number }).naturalWidth), W);
  assert.equal(await thumb.getAttribute("alt"), "Image: gradient.png");
  await page.getByText(`gradient.png · ${W}×${H}`).waitFor();

  // The brush: a band painted over rows 28–68 (lines at 32…64, 8 px wide), then one row erased.
  const painter = page.locator('[data-role="mask-painter"]');
  await painter.waitFor();
  assert.deepEqual(
    await page
      .locator('[data-role="mask-canvas"]')
      .evaluate((c) => [(c as unknown as { width: number }).width, (c as unknown as { height: number }).height]),
    [W, H],
  );
  await page.getByLabel("Brush size").fill("8");
  for (let y = 32; y <= 64; y += 4) await paintLine(32, 96, y);
  await page.getByRole("button", { name: "Erase", exact: true }).click();
  assert.equal(await page.getByRole("button", { name: "Erase", exact: true }).getAttribute("aria-pressed"), "true");
  await page.getByLabel("Brush size").fill("4");
  await paintLine(20, 108, 48);
  await page.getByRole("button", { name: "Erase", exact: true }).click();
  await shot("playground-mask-painted");

  await page.getByLabel("Prompt", { exact: true }).fill("a red door");
  await page.getByLabel("Num Inference Steps").fill("2");
  await page.getByRole("button", { name: "Run", exact: true }).click();
  const result = page.locator('[data-role="result"] [data-prediction]');
  await result.and(page.locator('[data-status="succeeded"]')).waitFor();
  // The snippet shows the uploaded files' URLs.
  assert.match(
    (await page.locator("#snippet-curl").textContent()) ?? "",
    /"mask": "http:\/\/[^"]+\/v1\/files\/\w+\/download"/,
  );

  const p = await newestPrediction();
  assert.equal(p["status"], "succeeded", String(p["error"]));
  inpainted = p;
  const input = p["input"] as Record<string, string>;
  assert.match(input["image"] ?? "", /\/v1\/files\/\w+\/download$/);
  assert.match(input["mask"] ?? "", /\/v1\/files\/\w+\/download$/);
  // The picture arrived byte for byte.
  const gotImage = await download(input["image"] as string);
  assert.equal(gotImage.status, 200);
  assert.ok(gotImage.body.equals(image));
  // The mask: a PNG at the picture's size, white where painted, black elsewhere, the erased row black.
  const gotMask = await download(input["mask"] as string);
  const mask = decode(new Uint8Array(gotMask.body));
  assert.deepEqual([mask.width, mask.height], [W, H]);
  const ch = mask.channels;
  const at = (x: number, y: number) => mask.data[(y * W + x) * ch] as number;
  let white = 0;
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const v = at(x, y);
      assert.ok(v === 0 || v === 255, `(${x}, ${y}) is ${v}: the mask is black and white`);
      for (let c = 1; c < Math.min(ch, 3); c++) assert.equal(mask.data[(y * W + x) * ch + c], v);
      if (v === 255) white++;
      const inside = x >= 36 && x <= 92 && y >= 34 && y <= 62 && (y <= 44 || y >= 52);
      const outside = x < 24 || x > 104 || y < 24 || y > 72 || (y >= 47 && y <= 49);
      if (inside) assert.equal(v, 255, `(${x}, ${y}) was painted`);
      if (outside) assert.equal(v, 0, `(${x}, ${y}) was not painted (or was erased)`);
    }
  }
  assert.ok(white > 1500, `${white} white pixels`);
});

test("the prediction page shows the input picture and mask to the token that uploaded them, and only to it", {
  skip,
}, async () => {
  assert.ok(inpainted, "needs the run above");
  const web = (inpainted["urls"] as Record<string, string>)["web"] as string;
  await page.goto(web);
  const images = page.locator("[data-input-image] img");
  await images.nth(1).waitFor();
  const sizes = await images.evaluateAll((imgs) =>
    imgs.map((i) => {
      const img = i as unknown as { alt: string; naturalWidth: number; naturalHeight: number; src: string };
      return [img.alt, img.naturalWidth, img.naturalHeight, img.src.slice(0, 5)];
    }),
  );
  assert.deepEqual(sizes, [
    ["Input image", W, H, "blob:"],
    ["Input mask", W, H, "blob:"],
  ]);
  await shot("prediction-input-images");

  // Without the token (the page is a capability URL), the uploads are not shown, nor fetchable.
  await setToken(null);
  await page.reload();
  await page.getByText("An uploaded file: shown to the API token that uploaded it.").first().waitFor();
  assert.equal(await page.locator("[data-input-image] img").count(), 0);
  const input = inpainted["input"] as Record<string, string>;
  assert.equal((await fetch(input["image"] as string)).status, 401);
  assert.equal((await download(input["image"] as string, OTHER_TOKEN)).status, 404);
  // With another token of this server, the page says so.
  await setToken(OTHER_TOKEN);
  await page.reload();
  await page.getByText("the API token kept in this browser did not upload it").first().waitFor();
  await setToken(TOKEN);
});

test("a data: URI input is shown from the page's own URL; other URLs are only linked", { skip }, async () => {
  const image = gradientPng(64, 48);
  const created = await api(
    server,
    "POST",
    `/v1/models/${IMG2IMG}/predictions`,
    {
      input: {
        prompt: "x",
        image: `data:image/png;base64,${image.toString("base64")}`,
        num_inference_steps: 2,
      },
    },
    { ...authHeaders(), Prefer: "wait" },
  );
  assert.equal(created.status, 201, JSON.stringify(created.json));
  const web = (created.json["urls"] as Record<string, string>)["web"] as string;
  await setToken(null);
  await page.goto(web);
  const img = page.locator('[data-input-image="image"] img');
  await img.waitFor();
  assert.equal(await img.evaluate((i) => (i as unknown as { naturalWidth: number }).naturalWidth), 64);
  assert.equal(await img.getAttribute("src"), `${web}/inputs/image`);
  const served = await fetch(`${web}/inputs/image`);
  assert.equal(served.headers.get("content-type"), "image/png");
  assert.ok(Buffer.from(await served.arrayBuffer()).equals(image));
  // The base64 is not repeated in the input list.
  await page.getByText(/^data:image\/png;base64,… \(\d+ kB\)$/).waitFor();
  // Only data: URI inputs are served there, and only for a page that exists.
  assert.equal((await fetch(`${web}/inputs/prompt`)).status, 404);
  assert.equal((await fetch(`${web}/inputs/mask`)).status, 404);
  assert.equal((await fetch(`${server.url}/p/nosuchkey/inputs/image`)).status, 404);
  for (const name of ["__proto__", "constructor", "toString", "%2e%2e", "image%00", "x".repeat(5000)]) {
    const res = await fetch(`${web}/inputs/${name}`);
    // Past the router's longest path parameter: 414.
    if (name.length > 100) {
      assert.equal(res.status, 414);
      continue;
    }
    assert.equal(res.status, 404, name);
    assert.match(res.headers.get("content-type") ?? "", /application\/problem\+json/, name);
  }
  // A data: URI that is not a picture is never served (as HTML or anything else).
  const html = await api(
    server,
    "POST",
    `/v1/models/${IMG2IMG}/predictions`,
    { input: { prompt: "x", image: "data:text/html,<script>alert(1)</script>", num_inference_steps: 2 } },
    { ...authHeaders(), Prefer: "wait" },
  );
  assert.equal(html.json["status"], "failed");
  const htmlWeb = (html.json["urls"] as Record<string, string>)["web"] as string;
  assert.equal((await fetch(`${htmlWeb}/inputs/image`)).status, 404);

  // A URL input is a link: the page loads nothing from elsewhere.
  const remote = await api(
    server,
    "POST",
    `/v1/models/${IMG2IMG}/predictions`,
    { input: { prompt: "x", image: "http://127.0.0.1:9/pictures/cat.png", num_inference_steps: 2 } },
    { ...authHeaders(), Prefer: "wait" },
  );
  await page.goto((remote.json["urls"] as Record<string, string>)["web"] as string);
  await page.getByRole("link", { name: "http://127.0.0.1:9/pictures/cat.png" }).waitFor();
  assert.equal(await page.locator("[data-input-image] img").count(), 0);
  await setToken(TOKEN);
});

test("bad files are refused in the form; a mask file, a pasted URL and img2img work too", { skip }, async () => {
  await setToken(TOKEN);
  await page.goto(`${server.url}/?model=${encodeURIComponent(INPAINT)}`);
  const picker = page.getByLabel("Image *", { exact: true });
  const error = page.locator("#field-image-error");
  await picker.setInputFiles({ name: "page.png", mimeType: "image/png", buffer: Buffer.from("<!doctype html><p>hi") });
  await error.getByText("page.png is not a picture (a PNG, JPEG or WebP image is needed).").waitFor();
  assert.equal(await picker.getAttribute("aria-invalid"), "true");
  assert.equal(await page.locator('[data-file-input="image"] [data-role="preview"]').isHidden(), true);
  const huge = Buffer.alloc(MAX_FILE_INPUT_BYTES + 1);
  await picker.setInputFiles({ name: "huge.png", mimeType: "image/png", buffer: huge });
  await error.getByText(/^huge\.png is 32 MB: over this server's limit of 32 MB for a file input\.$/).waitFor();
  // Running without the required files says which are missing, by their fields.
  await page.getByRole("button", { name: "Run", exact: true }).click();
  await page.locator("#field-mask-error").getByText("Choose, drop or paste mask file, or give its URL.").waitFor();
  await shot("playground-file-errors");

  // A picture and a mask file (nothing painted): the file is sent as the mask.
  const image = gradientPng();
  const maskFile = Buffer.from(
    encode({ width: W, height: H, data: new Uint8Array(W * H).fill(255), channels: 1, depth: 8 }),
  );
  await picker.setInputFiles({ name: "gradient.png", mimeType: "image/png", buffer: image });
  await page
    .getByLabel("Mask *", { exact: true })
    .setInputFiles({ name: "mask.png", mimeType: "image/png", buffer: maskFile });
  await page.getByLabel("Num Inference Steps").fill("2");
  await page.getByRole("button", { name: "Run", exact: true }).click();
  await page.locator('[data-role="result"] [data-prediction][data-status="succeeded"]').waitFor();
  const p = await newestPrediction();
  const got = await download((p["input"] as Record<string, string>)["mask"] as string);
  assert.ok(got.body.equals(maskFile));

  // img2img with a URL typed in: sent as it is (here refused by the server's private-address rule).
  await page.goto(`${server.url}/?model=${encodeURIComponent(IMG2IMG)}`);
  assert.equal(await page.locator('[data-role="mask-painter"]').count(), 0);
  await page.getByLabel("Image URL").fill("http://127.0.0.1:9/cat.png");
  await page.getByLabel("Num Inference Steps").fill("2");
  await page.getByRole("button", { name: "Run", exact: true }).click();
  const failed = page.locator('[data-role="result"] [data-prediction][data-status="failed"]');
  await failed.waitFor();
  await failed
    .getByText(/image: 127\.0\.0\.1 is a loopback, private/)
    .first()
    .waitFor();
  const q = await newestPrediction();
  assert.equal((q["input"] as Record<string, string>)["image"], "http://127.0.0.1:9/cat.png");
});

test("a dropped picture, a pasted URL, and the brush's clear and invert", { skip }, async () => {
  await setToken(TOKEN);
  await page.goto(`${server.url}/?model=${encodeURIComponent(INPAINT)}`);
  // Dropped on the image's drop zone, as a file dragged from the desktop arrives.
  const image = gradientPng();
  // (Page code as strings: this file is type-checked without the DOM's types.)
  const dropped = await page.evaluateHandle(`(() => {
    const bytes = Uint8Array.from(atob(${JSON.stringify(image.toString("base64"))}), (c) => c.charCodeAt(0));
    const dt = new DataTransfer();
    dt.items.add(new File([bytes], "dropped.png", { type: "image/png" }));
    return dt;
  })()`);
  await page
    .locator('[data-file-input="image"] [data-role="drop-zone"]')
    .dispatchEvent("drop", { dataTransfer: dropped });
  await page.getByText(`dropped.png · ${W}×${H}`).waitFor();
  await page.locator('[data-role="mask-painter"]').waitFor();

  // A URL pasted on the mask's drop zone goes to its URL field.
  await page.evaluate(`(() => {
    const dt = new DataTransfer();
    dt.setData("text/plain", "https://pictures.example.com/mask.png");
    const zone = document.querySelector('[data-file-input="mask"] [data-role="drop-zone"]');
    zone.dispatchEvent(new ClipboardEvent("paste", { clipboardData: dt, bubbles: true, cancelable: true }));
  })()`);
  assert.equal(await page.getByLabel("Mask URL").inputValue(), "https://pictures.example.com/mask.png");
  await page.getByLabel("Mask URL").fill("");

  // Painted, then cleared: nothing is painted, and the mask is missing again.
  await page.getByLabel("Brush size").fill("20");
  await paintLine(10, 110, 50);
  await page.getByRole("button", { name: "Clear mask" }).click();
  await page.getByRole("button", { name: "Run", exact: true }).click();
  await page.locator("#field-mask-error").getByText("Choose, drop or paste mask file, or give its URL.").waitFor();

  // Inverted from empty (everything repainted), with the keyboard.
  await page.getByRole("button", { name: "Invert mask" }).focus();
  await page.keyboard.press("Enter");
  await page.getByLabel("Num Inference Steps").fill("2");
  await page.getByRole("button", { name: "Run", exact: true }).click();
  await page.locator('[data-role="result"] [data-prediction][data-status="succeeded"]').waitFor();
  const p = await newestPrediction();
  const input = p["input"] as Record<string, string>;
  assert.ok((await download(input["image"] as string)).body.equals(image));
  const mask = decode(new Uint8Array((await download(input["mask"] as string)).body));
  assert.deepEqual([mask.width, mask.height], [W, H]);
  for (let i = 0; i < W * H; i++) assert.equal(mask.data[i * mask.channels], 255, `pixel ${i}`);
});
