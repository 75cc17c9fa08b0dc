/**
 * The web pages in a real browser: Debian's chromium driven by playwright-core against the real
 * `sdserve serve` (tiny-random). The playground's schema-made form runs a prediction that shows
 * progress, a live preview and then its image; a running one is canceled from its page; an
 * API-made prediction's urls.web opens without a token. Screenshots go to test-artifacts/web/.
 */
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import type { Page } from "playwright-core";
import { REPO_ROOT } from "../helpers/fixtures.js";
import { type Browser, launchChromium, noChromium } from "./browser.js";
import { api, authHeaders, type Sdserve, slowInput, smallInput, startSdserve, TOKEN, VERSION } from "./server.js";

const ARTIFACTS = path.join(REPO_ROOT, "test-artifacts", "web");
const skip = noChromium;

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
});

after(async () => {
  await browser?.close();
  await server?.stop();
  assert.deepEqual(pageErrors, []);
});

const shot = (name: string) => page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });

test("the playground: token, schema-made form, progress and preview, then the image", { skip }, async () => {
  await page.goto(`${server.url}/`);
  // Every Input property has a labelled control.
  for (const label of ["Prompt", "Negative Prompt", "Width", "Height", "Num Outputs", "Num Inference Steps"]) {
    await page.getByLabel(label, { exact: true }).waitFor();
  }
  await page.getByRole("button", { name: "Set API token" }).first().click();
  await page.getByRole("textbox", { name: "Token" }).fill("r8_not_a_token");
  await page.getByRole("button", { name: "Save" }).click();
  await page.getByText("This server does not accept that token.").waitFor();
  await page.getByRole("textbox", { name: "Token" }).fill(TOKEN);
  await page.getByRole("button", { name: "Save" }).click();
  await page.getByRole("dialog").waitFor({ state: "hidden" });

  await page.getByLabel("Prompt", { exact: true }).fill("a lighthouse at dusk");
  await page.getByLabel("Width").selectOption("256");
  await page.getByLabel("Height").selectOption("256");
  await page.getByLabel("Num Inference Steps").fill("300");
  await page.getByLabel("Seed").fill("42");
  // The snippet follows the form.
  const curl = await page.locator("#snippet-curl").textContent();
  assert.match(curl ?? "", /"num_inference_steps": 300,/);
  assert.match(curl ?? "", /"seed": 42/);

  await page.getByRole("button", { name: "Run", exact: true }).click();
  const result = page.locator('[data-role="result"] [data-prediction]');
  await result.locator(".has-preview canvas").first().waitFor();
  await result.getByText(/^[1-9]\d* \/ 300 steps$/).waitFor();
  await shot("playground-running");

  await result.and(page.locator('[data-status="succeeded"]')).waitFor();
  const image = result.locator(".output img");
  await image.waitFor();
  assert.equal(
    await image.evaluate((img) => {
      const loaded = img as unknown as { complete: boolean; naturalWidth: number };
      return loaded.complete && loaded.naturalWidth;
    }),
    256,
  );
  await result.getByRole("link", { name: "Download out-0.png" }).waitFor();
  assert.equal(await result.locator('[data-detail="seed"]').textContent(), "42");
  // The gallery lists it, with the token's other predictions only.
  await page.locator(".gallery .card").first().waitFor();
  assert.match((await page.locator(".gallery .card").first().textContent()) ?? "", /a lighthouse at dusk/);
  await shot("playground-succeeded");
});

test("a running prediction is canceled from its page", { skip }, async () => {
  const created = await api(server, "POST", "/v1/predictions", { version: VERSION, input: slowInput() });
  await page.goto((created.json["urls"] as Record<string, string>)["web"] as string);
  await page.locator(".has-preview canvas").waitFor();
  await page.getByText(/^[1-9]\d* \/ 500 steps$/).waitFor();
  await shot("prediction-running");
  await page.getByRole("button", { name: "Cancel" }).click();
  await page.locator('[data-prediction][data-status="canceled"]').waitFor();
  await page.getByText(/Stopped after \d+ of 500 steps/).waitFor();
  const after = await api(server, "GET", `/v1/predictions/${created.json["id"]}`);
  assert.equal(after.json["status"], "canceled");
  await shot("prediction-canceled");
});

test("urls.web of an API-made prediction opens without a token, dark and narrow too", { skip }, async () => {
  const created = await api(
    server,
    "POST",
    "/v1/predictions",
    { version: VERSION, input: smallInput({ num_outputs: 2, seed: 7 }) },
    { ...authHeaders(), Prefer: "wait" },
  );
  assert.equal(created.json["status"], "succeeded");
  await page.evaluate("localStorage.clear()");
  await page.goto((created.json["urls"] as Record<string, string>)["web"] as string);
  await page.getByRole("heading", { name: `Prediction ${created.json["id"]}` }).waitFor();
  assert.equal(await page.locator(".output img").count(), 2);
  assert.equal(await page.locator('[data-detail="seed"]').textContent(), "7");
  await page.getByText("a lighthouse at dusk").first().waitFor();
  // Acting on it takes the token: the dialog asks for it.
  await page.getByRole("button", { name: "Run again, same seed" }).click();
  await page.getByRole("dialog").getByText("This takes the API token that made the prediction.").waitFor();
  await page.keyboard.press("Escape");
  await page.emulateMedia({ colorScheme: "dark" });
  await page.setViewportSize({ width: 390, height: 844 });
  await shot("prediction-page-dark-narrow");
  await page.emulateMedia({ colorScheme: "light" });
  await page.setViewportSize({ width: 1280, height: 900 });
});
