/**
 * AUTOMATIC1111's /sdapi/v1 against a real server, replaying what its best-known clients send
 * (the calls of Open WebUI's backend/open_webui/routers/images.py and SillyTavern's
 * src/endpoints/stable-diffusion.js, rebuilt from their source), each answer read the way that
 * client reads it; a script's "same seed, same image"; and bad input in A1111's error shapes.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import { decode } from "fast-png";
import { api, authHeaders, eventually, newDataDir, type Sdserve, startSdserve, TOKEN } from "./server.js";

let server: Sdserve;
const OTHER_MODEL = "sdserve-test/other";

function basic(user: string, password: string): Record<string, string> {
  return {
    Authorization: `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`,
    "Content-Type": "application/json",
  };
}
/** An --api-auth user, as Open WebUI's AUTOMATIC1111_API_AUTH and SillyTavern's auth field send it. */
const USER = basic("webui", "s3cret:with-colon");
/** Any user name with an API token as the password: that token's account. */
const TOKEN_AS_PASSWORD = basic("anyone", TOKEN);

before(async () => {
  const dir = newDataDir();
  const file = path.join(dir, "models.json");
  writeFileSync(
    file,
    JSON.stringify({
      models: {
        "stability-ai/stable-diffusion": { weights: "tiny-random" },
        [OTHER_MODEL]: { weights: "tiny-random", defaults: { width: 128, height: 128, num_inference_steps: 2 } },
      },
    }),
  );
  server = await startSdserve({ args: ["--models", file, "--api-auth", "webui:s3cret:with-colon,second:pw"] });
});
after(async () => {
  await server?.stop();
});

/** Python's json.loads and base64 decoding, as both clients do with `info` and `images`. */
function readTxt2img(json: Record<string, unknown>): { pngs: Uint8Array[]; info: Record<string, unknown> } {
  assert.ok(Array.isArray(json["images"]));
  assert.equal(typeof json["info"], "string");
  assert.equal(typeof json["parameters"], "object");
  const pngs = (json["images"] as string[]).map((b64) => {
    assert.match(b64, /^[A-Za-z0-9+/]+={0,2}$/, "raw base64, no data: prefix");
    return new Uint8Array(Buffer.from(b64, "base64"));
  });
  return { pngs, info: JSON.parse(json["info"] as string) as Record<string, unknown> };
}

test("Open WebUI: verify, list models, switch model (the whole options object back), txt2img", async () => {
  // verify_url: GET options with the Basic header.
  const verify = await api(server, "GET", "/sdapi/v1/options", undefined, USER);
  assert.equal(verify.status, 200);
  // get_image_model: options["sd_model_checkpoint"].
  assert.match(verify.json["sd_model_checkpoint"] as string, /^stability-ai\/stable-diffusion \[[0-9a-f]{10}\]$/);
  // get_models: [{id: title, name: model_name}].
  const models = await api(server, "GET", "/sdapi/v1/sd-models", undefined, USER);
  assert.equal(models.status, 200);
  const listed = (models.json as unknown as Record<string, unknown>[]).map((m) => ({
    id: m["title"] as string,
    name: m["model_name"] as string,
  }));
  assert.deepEqual(
    listed.map((m) => m.name),
    ["stability-ai/stable-diffusion", OTHER_MODEL],
  );
  for (const m of models.json as unknown as Record<string, unknown>[]) {
    assert.match(m["hash"] as string, /^[0-9a-f]{10}$/);
    assert.match(m["sha256"] as string, /^[0-9a-f]{64}$/);
    assert.equal(typeof m["filename"], "string");
    assert.ok("config" in m);
  }
  // set_image_model: GET options, change sd_model_checkpoint, POST the whole object.
  const options = { ...verify.json, sd_model_checkpoint: listed[1]?.id };
  const set = await api(server, "POST", "/sdapi/v1/options", options, USER);
  assert.equal(set.status, 200);
  const after = await api(server, "GET", "/sdapi/v1/options", undefined, USER);
  assert.equal(after.json["sd_model_checkpoint"], listed[1]?.id);
  // Another account's checkpoint is its own.
  const other = await api(server, "GET", "/sdapi/v1/options", undefined, basic("second", "pw"));
  assert.equal(other.json["sd_model_checkpoint"], listed[0]?.id);

  // image_generations: batch_size is n, the size split from "WxH", then its optional params.
  const res = await api(
    server,
    "POST",
    "/sdapi/v1/txt2img",
    {
      prompt: "a lighthouse at dusk",
      batch_size: 2,
      width: 128,
      height: 128,
      steps: 2,
      cfg_scale: 7,
      sampler_name: "Euler a",
      scheduler: "Automatic",
      negative_prompt: "fog",
    },
    USER,
  );
  assert.equal(res.status, 200, JSON.stringify(res.json));
  const { pngs, info } = readTxt2img(res.json);
  assert.equal(pngs.length, 2);
  for (const png of pngs) {
    const img = decode(png);
    assert.deepEqual([img.width, img.height], [128, 128]);
  }
  assert.equal(info["sd_model_name"], OTHER_MODEL);
  // parameters: txt2img's model, as sent with A1111's defaults; no img2img fields.
  const parameters = res.json["parameters"] as Record<string, unknown>;
  assert.equal(parameters["batch_size"], 2);
  assert.equal(parameters["enable_hr"], false);
  assert.equal(parameters["hr_scale"], 2);
  assert.equal(parameters["sampler_index"], "Euler");
  assert.equal("init_images" in parameters, false);
  assert.equal(info["sampler_name"], "Euler a");
  assert.equal(info["prompt"], "a lighthouse at dusk");
  assert.equal(info["negative_prompt"], "fog");
  assert.deepEqual(info["all_seeds"], [info["seed"], (info["seed"] as number) + 1]);
  assert.equal((info["infotexts"] as string[]).length, 2);
  assert.match((info["infotexts"] as string[])[0] as string, /Steps: 2, Sampler: Euler a, .*Seed: \d+, Size: 128x128/);
});

test("A Basic password that is an API token: the txt2img images are that token's predictions", async () => {
  const res = await api(
    server,
    "POST",
    "/sdapi/v1/txt2img",
    { prompt: "token-owned", width: 128, height: 128, steps: 2, seed: 11 },
    TOKEN_AS_PASSWORD,
  );
  assert.equal(res.status, 200, JSON.stringify(res.json));
  const list = await api(server, "GET", "/v1/predictions?page_size=1", undefined, authHeaders());
  const p = (list.json["results"] as Record<string, unknown>[])[0] as Record<string, unknown>;
  assert.equal(p["status"], "succeeded");
  assert.equal(p["model"], "stability-ai/stable-diffusion");
  assert.deepEqual(p["input"], {
    prompt: "token-owned",
    width: 128,
    height: 128,
    num_outputs: 1,
    num_inference_steps: 2,
    guidance_scale: 7,
    scheduler: "K_EULER",
    seed: 11,
  });
  // Its web page and file are the prediction's.
  const page = await fetch((p["urls"] as Record<string, string>)["web"] as string);
  assert.equal(page.status, 200);
  // Bearer tokens are accepted too.
  const bearer = await api(server, "GET", "/sdapi/v1/sd-models", undefined, authHeaders());
  assert.equal(bearer.status, 200);
});

test("SillyTavern: ping, lists, get/set model with progress polling, generate, progress and interrupt", async () => {
  const auth = basic("second", "pw");
  // /ping: GET options, ok or not.
  assert.equal((await api(server, "GET", "/sdapi/v1/options", undefined, auth)).status, 200);
  // /upscalers: names of upscalers, with the latent modes spliced in after "None".
  const ups = await api(server, "GET", "/sdapi/v1/upscalers", undefined, auth);
  const latent = await api(server, "GET", "/sdapi/v1/latent-upscale-modes", undefined, auth);
  const upNames = (ups.json as unknown as { name: string }[]).map((x) => x.name);
  upNames.splice(1, 0, ...(latent.json as unknown as { name: string }[]).map((x) => x.name));
  assert.equal(upNames[0], "None");
  // /vaes: model_name of each; /samplers and /schedulers: name of each.
  const vaes = await api(server, "GET", "/sdapi/v1/sd-vae", undefined, auth);
  assert.ok(Array.isArray(vaes.json));
  const samplers = (await api(server, "GET", "/sdapi/v1/samplers", undefined, auth)).json as unknown as {
    name: string;
  }[];
  assert.ok(samplers.map((x) => x.name).includes("Euler a"));
  // The samplers of the model's published input, no more.
  assert.deepEqual(samplers.map((x) => x.name).sort(), ["DDIM", "DPM++ 2M", "Euler", "Euler a", "LMS", "PLMS"]);
  const schedulers = (await api(server, "GET", "/sdapi/v1/schedulers", undefined, auth)).json as unknown as {
    name: string;
    label: string;
  }[];
  assert.deepEqual(
    schedulers.map((x) => x.label),
    ["Automatic", "Karras"],
  );
  // DPM++ 2M's own schedule is Karras (A1111 1.9+), which "Automatic" means.
  assert.deepEqual(
    (samplers as unknown as { name: string; options: unknown }[]).find((x) => x.name === "DPM++ 2M")?.options,
    { scheduler: "karras" },
  );
  for (const route of ["loras", "embeddings"]) {
    assert.equal((await api(server, "GET", `/sdapi/v1/${route}`, undefined, auth)).status, 200);
  }
  // /models: {value: title, text: title}; /get-model: options.sd_model_checkpoint.
  const models = (await api(server, "GET", "/sdapi/v1/sd-models", undefined, auth)).json as unknown as {
    title: string;
  }[];
  const titles = models.map((x) => x.title);
  // /set-model: POST {sd_model_checkpoint}, then poll progress until progress 0 and job_count 0.
  const set = await api(server, "POST", "/sdapi/v1/options", { sd_model_checkpoint: titles[0] }, auth);
  assert.equal(set.status, 200);
  const idle = await api(server, "GET", "/sdapi/v1/progress", undefined, auth);
  assert.equal(idle.json["progress"], 0);
  assert.equal((idle.json["state"] as Record<string, unknown>)["job_count"], 0);
  assert.equal((await api(server, "GET", "/sdapi/v1/options", undefined, auth)).json["sd_model_checkpoint"], titles[0]);

  // /generate: checks options for forge_preset, then posts the client's whole body (url and auth included).
  const opts = (await api(server, "GET", "/sdapi/v1/options", undefined, auth)).json;
  assert.equal("forge_preset" in opts, false);
  const body = {
    prompt: "a slow lighthouse",
    negative_prompt: "",
    sampler_name: "DPM++ 2M",
    scheduler: "Automatic",
    steps: 500,
    cfg_scale: 7,
    width: 512,
    height: 512,
    restore_faces: false,
    enable_hr: false,
    hr_upscaler: "None",
    hr_scale: 1,
    hr_second_pass_steps: 0,
    denoising_strength: 0.7,
    seed: -1,
    clip_skip: 1,
    override_settings: { CLIP_stop_at_last_layers: 1 },
    override_settings_restore_afterwards: true,
    save_images: false,
    send_images: true,
    do_not_save_grid: false,
    do_not_save_samples: false,
    url: server.url,
    auth: "second:pw",
  };
  const generation = api(server, "POST", "/sdapi/v1/txt2img", body, auth);
  // While it runs: the progress bar SillyTavern's UI polls.
  const running = await eventually(async () => {
    const r = await api(server, "GET", "/sdapi/v1/progress", undefined, auth);
    const state = r.json["state"] as Record<string, number>;
    return (state["sampling_step"] ?? 0) > 0 ? r.json : undefined;
  }, "a sampling step in /progress");
  const state = running["state"] as Record<string, unknown>;
  assert.equal(state["job_count"], 1);
  assert.equal(state["sampling_steps"], 500);
  assert.ok((running["progress"] as number) > 0 && (running["progress"] as number) < 1);
  assert.equal(typeof running["eta_relative"], "number");
  // The preview A1111 shows as current_image: a base64 PNG while previews exist.
  const preview = await eventually(async () => {
    const r = await api(server, "GET", "/sdapi/v1/progress", undefined, auth);
    return typeof r.json["current_image"] === "string" ? (r.json["current_image"] as string) : undefined;
  }, "a preview in /progress");
  assert.ok(decode(new Uint8Array(Buffer.from(preview, "base64"))).width > 0);
  // Another account sees nothing of it, and cannot stop it.
  const stranger = await api(server, "GET", "/sdapi/v1/progress", undefined, USER);
  assert.equal((stranger.json["state"] as Record<string, unknown>)["job_count"], 0);
  // The client hangs up or the user presses stop: /interrupt.
  const interrupted = await api(server, "POST", "/sdapi/v1/interrupt", undefined, auth);
  assert.equal(interrupted.status, 200);
  const res = await generation;
  assert.equal(res.status, 200, JSON.stringify(res.json));
  assert.deepEqual(res.json["images"], []);
  const after = await api(server, "GET", "/sdapi/v1/progress", undefined, auth);
  assert.equal((after.json["state"] as Record<string, unknown>)["job_count"], 0);
  assert.equal((await api(server, "POST", "/sdapi/v1/skip", undefined, auth)).status, 200);
});

test("a script: txt2img, read info.seed, again with that seed: the same image; batch images by seed + i", async () => {
  const req = { prompt: "a red bicycle", width: 128, height: 128, steps: 2, sampler_name: "Euler a" };
  const first = await api(server, "POST", "/sdapi/v1/txt2img", { ...req, seed: -1, batch_size: 2 }, TOKEN_AS_PASSWORD);
  assert.equal(first.status, 200, JSON.stringify(first.json));
  const a = readTxt2img(first.json);
  const seed = a.info["seed"] as number;
  assert.ok(Number.isInteger(seed) && seed >= 0);
  const again = readTxt2img((await api(server, "POST", "/sdapi/v1/txt2img", { ...req, seed }, TOKEN_AS_PASSWORD)).json);
  assert.equal(again.info["seed"], seed);
  assert.deepEqual(Buffer.from(again.pngs[0] as Uint8Array), Buffer.from(a.pngs[0] as Uint8Array));
  const second = readTxt2img(
    (await api(server, "POST", "/sdapi/v1/txt2img", { ...req, seed: seed + 1 }, TOKEN_AS_PASSWORD)).json,
  );
  assert.deepEqual(Buffer.from(second.pngs[0] as Uint8Array), Buffer.from(a.pngs[1] as Uint8Array));
  // send_images false: no images, the info still.
  const none = await api(server, "POST", "/sdapi/v1/txt2img", { ...req, seed, send_images: false }, TOKEN_AS_PASSWORD);
  assert.deepEqual(none.json["images"], []);
  assert.equal(JSON.parse(none.json["info"] as string)["seed"], seed);
  // CLIP_stop_at_last_layers is applied (SD's text encoder): another picture, and info and the infotext say so.
  const skip = await api(
    server,
    "POST",
    "/sdapi/v1/txt2img",
    { ...req, seed, override_settings: { CLIP_stop_at_last_layers: 2 } },
    TOKEN_AS_PASSWORD,
  );
  const skipped = readTxt2img(skip.json);
  assert.equal(skipped.info["clip_skip"], 2);
  assert.match((skipped.info["infotexts"] as string[])[0] as string, /, Clip skip: 2, /);
  assert.notDeepEqual(Buffer.from(skipped.pngs[0] as Uint8Array), Buffer.from(again.pngs[0] as Uint8Array));
});

test("bad input gets A1111's error shapes, never a 500", async () => {
  const small = { prompt: "x", width: 128, height: 128, steps: 2 };
  // As the token's account, so the list at the end shows whether any of this made a prediction.
  const post = (body: unknown, headers = TOKEN_AS_PASSWORD) => api(server, "POST", "/sdapi/v1/txt2img", body, headers);
  const validation = (r: { status: number; json: Record<string, unknown> }, field: string) => {
    assert.equal(r.status, 422, JSON.stringify(r.json));
    const detail = r.json["detail"] as { loc: unknown[]; msg: string; type: string }[];
    assert.ok(Array.isArray(detail) && detail.length > 0, JSON.stringify(r.json));
    assert.deepEqual(detail[0]?.loc, ["body", field]);
    assert.equal(typeof detail[0]?.msg, "string");
    assert.equal(typeof detail[0]?.type, "string");
  };
  // Wrong Basic credentials, a malformed Basic header, and none at all.
  for (const headers of [
    basic("webui", "wrong"),
    basic("nobody", "s3cret:with-colon"),
    { Authorization: "Basic !!!not-base64", "Content-Type": "application/json" },
    { "Content-Type": "application/json" },
  ]) {
    const r = await api(server, "GET", "/sdapi/v1/options", undefined, headers);
    assert.equal(r.status, 401);
    assert.equal(r.headers.get("www-authenticate"), "Basic");
    // --api-auth's HTTPException goes through A1111's exception handler like any other.
    assert.deepEqual(r.json, {
      error: "HTTPException",
      detail: "Incorrect username or password",
      body: "",
      errors: "401: Incorrect username or password",
    });
  }
  // Unknown sampler and unknown model: A1111's HTTPException.
  const sampler = await post({ ...small, sampler_name: "Nope++ 9M" });
  assert.equal(sampler.status, 404);
  // A1111's handler: {error, detail, body, errors: str(e)}, Starlette's "status: detail".
  assert.deepEqual(sampler.json, {
    error: "HTTPException",
    detail: "Sampler not found",
    body: "",
    errors: "404: Sampler not found",
  });
  const model = await post({ ...small, override_settings: { sd_model_checkpoint: "missing.safetensors" } });
  assert.equal(model.status, 404);
  assert.match(model.json["detail"] as string, /not found/);
  const setModel = await api(
    server,
    "POST",
    "/sdapi/v1/options",
    { sd_model_checkpoint: "missing" },
    TOKEN_AS_PASSWORD,
  );
  assert.equal(setModel.status, 404);
  // Types, ranges and sizes: FastAPI's 422.
  // Samplers this model's input does not list, and schedule types without a sampler here.
  validation(await post({ ...small, sampler_name: "Euler a Karras" }), "scheduler");
  validation(await post({ ...small, sampler_name: "DDIM", scheduler: "Karras" }), "scheduler");
  validation(await post({ ...small, sampler_name: "Heun" }), "sampler_name");
  validation(await post({ ...small, sampler_name: "Euler", scheduler: "Exponential" }), "scheduler");
  validation(await post({ ...small, steps: "twenty" }), "steps");
  validation(await post({ ...small, steps: 0 }), "steps");
  validation(await post({ ...small, width: 100 }), "width");
  validation(await post({ ...small, seed: -7 }), "seed");
  validation(await post({ ...small, batch_size: 10, n_iter: 10 }), "batch_size");
  validation(await post({ ...small, cfg_scale: 1e9 }), "cfg_scale");
  validation(await post({ ...small, prompt: "p".repeat(20_000) }), "prompt");
  validation(await post({ ...small, prompt: ["not", "a", "string"] }), "prompt");
  validation(await post({ ...small, seed: 1e20 }), "seed");
  validation(await post({ ...small, batch_size: 1.5 }), "batch_size");
  validation(await post({ ...small, send_images: "yes" }), "send_images");
  validation(await post({ ...small, override_settings: ["sd_model_checkpoint"] }), "override_settings");
  const nested = await post({ ...small, override_settings: { CLIP_stop_at_last_layers: 99 } });
  assert.equal(nested.status, 422);
  assert.deepEqual((nested.json["detail"] as { loc: unknown[] }[])[0]?.loc, [
    "body",
    "override_settings",
    "CLIP_stop_at_last_layers",
  ]);
  // A1111's optional fields take null as "not given".
  const nulls = await post({
    ...small,
    prompt: "nulls",
    seed: null,
    sampler_name: null,
    override_settings: { sd_vae: null },
  });
  assert.equal(nulls.status, 200, JSON.stringify(nulls.json));
  // A path not served here: FastAPI's 404.
  const missing = await api(server, "POST", "/sdapi/v1/extra-single-image", {}, TOKEN_AS_PASSWORD);
  assert.equal(missing.status, 404);
  assert.deepEqual(missing.json, { detail: "Not Found" });
  // Not JSON, and not an object.
  const notJson = await post("{not json");
  assert.equal(notJson.status, 422);
  assert.ok(Array.isArray(notJson.json["detail"]));
  const array = await post([1, 2, 3]);
  assert.equal(array.status, 422);
  // Nothing of that made a prediction.
  const list = await api(server, "GET", "/v1/predictions?page_size=100", undefined, authHeaders());
  for (const p of list.json["results"] as Record<string, unknown>[]) {
    assert.notEqual((p["input"] as Record<string, unknown>)["prompt"], "x");
  }
});

test("a client that hangs up mid-txt2img: that call's predictions are canceled", async () => {
  const controller = new AbortController();
  const call = fetch(`${server.url}/sdapi/v1/txt2img`, {
    method: "POST",
    headers: TOKEN_AS_PASSWORD,
    body: JSON.stringify({ prompt: "abandoned", width: 512, height: 512, steps: 500, batch_size: 2 }),
    signal: controller.signal,
  }).catch(() => undefined);
  const running = await eventually(async () => {
    const r = await api(server, "GET", "/sdapi/v1/progress", undefined, TOKEN_AS_PASSWORD);
    return (r.json["state"] as Record<string, number>)["sampling_step"] ? r.json : undefined;
  }, "the call running");
  assert.equal((running["state"] as Record<string, unknown>)["job_count"], 2);
  controller.abort();
  await call;
  const list = await eventually(async () => {
    const r = await api(server, "GET", "/v1/predictions?page_size=2", undefined, authHeaders());
    const results = r.json["results"] as Record<string, unknown>[];
    return results.every((p) => p["status"] === "canceled") ? results : undefined;
  }, "both predictions canceled");
  assert.deepEqual(
    list.map((p) => (p["input"] as Record<string, unknown>)["prompt"]),
    ["abandoned", "abandoned"],
  );
});

test("/openapi.json describes the A1111 routes from their schemas, behind Basic or a token", async () => {
  const doc = (await (await fetch(`${server.url}/openapi.json`)).json()) as {
    paths: Record<string, Record<string, { security?: unknown; requestBody?: unknown }>>;
    components: { securitySchemes: Record<string, unknown> };
  };
  const txt2img = doc.paths["/sdapi/v1/txt2img"]?.["post"];
  assert.ok(txt2img?.requestBody, "txt2img's body");
  assert.deepEqual(txt2img?.security, [{ basicAuth: [] }, { bearerAuth: [] }]);
  for (const path of ["/sdapi/v1/options", "/sdapi/v1/sd-models", "/sdapi/v1/progress"]) {
    assert.ok(doc.paths[path]?.["get"], path);
  }
  assert.deepEqual(doc.components.securitySchemes["basicAuth"], { type: "http", scheme: "basic" });
});

test("a batch refused part-way (the token's cap): 429 in A1111's shape, and what it made is canceled", async () => {
  const capped = await startSdserve({
    env: { SDSERVE_QUEUE_MAX_PER_TOKEN: "2", SDSERVE_BODY_LIMIT: "64kb", SDSERVE_A1111_BODY_LIMIT: "160kb" },
  });
  try {
    // img2img's pictures come in its JSON: its own limit, past the general one (a 100 kB body
    // gets as far as decoding the picture); a picture larger than that: 413 in A1111's shape.
    const big = await api(
      capped,
      "POST",
      "/sdapi/v1/img2img",
      { prompt: "big", init_images: ["A".repeat(100_000)] },
      TOKEN_AS_PASSWORD,
    );
    assert.equal(big.status, 422, JSON.stringify(big.json).slice(0, 300));
    assert.deepEqual((big.json["detail"] as { loc: string[] }[])[0]?.loc, ["body", "init_images"]);
    const huge = await api(
      capped,
      "POST",
      "/sdapi/v1/img2img",
      { prompt: "huge", init_images: ["A".repeat(200_000)] },
      TOKEN_AS_PASSWORD,
    );
    assert.equal(huge.status, 413);
    assert.equal(huge.json["error"], "HTTPException");
    // Other routes keep the general limit.
    const long = await api(capped, "POST", "/sdapi/v1/txt2img", { prompt: "x".repeat(100_000) }, TOKEN_AS_PASSWORD);
    assert.equal(long.status, 413);
    const res = await api(
      capped,
      "POST",
      "/sdapi/v1/txt2img",
      { prompt: "too many", width: 512, height: 512, steps: 500, batch_size: 3 },
      TOKEN_AS_PASSWORD,
    );
    assert.equal(res.status, 429, JSON.stringify(res.json));
    assert.equal(res.json["error"], "HTTPException");
    assert.equal(typeof res.json["detail"], "string");
    const made = await eventually(async () => {
      const r = await api(capped, "GET", "/v1/predictions", undefined, authHeaders());
      const results = r.json["results"] as Record<string, unknown>[];
      return results.length === 2 && results.every((p) => p["status"] === "canceled") ? results : undefined;
    }, "the two made canceled");
    assert.equal(made.length, 2);
  } finally {
    await capped.stop();
  }
});

test("img2img: init_images (raw base64 or data: URI) on the checkpoint's img2img model; a mask inpaints", async () => {
  const made = await api(
    server,
    "POST",
    "/sdapi/v1/txt2img",
    { prompt: "a source picture", width: 128, height: 128, steps: 2, seed: 3 },
    TOKEN_AS_PASSWORD,
  );
  const source = (made.json["images"] as string[])[0] as string;
  for (const init of [source, `data:image/png;base64,${source}`]) {
    const res = await api(
      server,
      "POST",
      "/sdapi/v1/img2img",
      {
        prompt: "the same, at dusk",
        init_images: [init],
        denoising_strength: 0.5,
        steps: 4,
        seed: 9,
        width: 128,
        height: 128,
      },
      TOKEN_AS_PASSWORD,
    );
    assert.equal(res.status, 200, JSON.stringify(res.json));
    const { pngs, info } = readTxt2img(res.json);
    assert.deepEqual([decode(pngs[0] as Uint8Array).width, decode(pngs[0] as Uint8Array).height], [128, 128]);
    assert.equal(info["denoising_strength"], 0.5);
    // parameters: the request as A1111's img2img model holds it, its defaults filled in, the pictures not sent back.
    const parameters = res.json["parameters"] as Record<string, unknown>;
    assert.deepEqual(
      {
        init_images: parameters["init_images"],
        mask: parameters["mask"],
        include_init_images: parameters["include_init_images"],
        denoising_strength: parameters["denoising_strength"],
        resize_mode: parameters["resize_mode"],
        mask_blur: parameters["mask_blur"],
        mask_blur_x: parameters["mask_blur_x"],
        mask_blur_y: parameters["mask_blur_y"],
        mask_round: parameters["mask_round"],
        inpainting_fill: parameters["inpainting_fill"],
        inpaint_full_res: parameters["inpaint_full_res"],
        inpaint_full_res_padding: parameters["inpaint_full_res_padding"],
        inpainting_mask_invert: parameters["inpainting_mask_invert"],
        image_cfg_scale: parameters["image_cfg_scale"],
        initial_noise_multiplier: parameters["initial_noise_multiplier"],
        latent_mask: parameters["latent_mask"],
        steps: parameters["steps"],
        seed: parameters["seed"],
        cfg_scale: parameters["cfg_scale"],
        sampler_index: parameters["sampler_index"],
        send_images: parameters["send_images"],
      },
      {
        init_images: null,
        mask: null,
        include_init_images: false,
        denoising_strength: 0.5,
        resize_mode: 0,
        mask_blur: null,
        mask_blur_x: 4,
        mask_blur_y: 4,
        mask_round: true,
        inpainting_fill: 0,
        inpaint_full_res: true,
        inpaint_full_res_padding: 0,
        inpainting_mask_invert: 0,
        image_cfg_scale: null,
        initial_noise_multiplier: null,
        latent_mask: null,
        steps: 4,
        seed: 9,
        cfg_scale: 7,
        sampler_index: "Euler",
        send_images: true,
      },
    );
    // img2img has no hires fix: none of txt2img's own fields.
    for (const key of ["enable_hr", "hr_scale", "firstphase_width", "hr_prompt"])
      assert.equal(key in parameters, false);
    // The picture sent is not echoed: the answer carries the made image once, and no more.
    assert.ok(!JSON.stringify(parameters).includes(source.slice(40, 140)));
  }
  const list = await api(server, "GET", "/v1/predictions?page_size=1", undefined, authHeaders());
  const p = (list.json["results"] as Record<string, unknown>[])[0] as Record<string, unknown>;
  assert.equal(p["model"], "stability-ai/stable-diffusion-img2img");
  assert.equal((p["input"] as Record<string, unknown>)["prompt_strength"], 0.5);

  // A white square to repaint, inverted and blurred as A1111 reads mask options.
  const mask = source; // any picture decodes; its greys become the mask
  const inpaint = await api(
    server,
    "POST",
    "/sdapi/v1/img2img",
    {
      prompt: "a door",
      init_images: [source],
      mask,
      inpainting_mask_invert: 1,
      mask_blur: 2,
      width: 128,
      height: 128,
      steps: 2,
      seed: 1,
    },
    TOKEN_AS_PASSWORD,
  );
  assert.equal(inpaint.status, 200, JSON.stringify(inpaint.json));
  const echoed = inpaint.json["parameters"] as Record<string, unknown>;
  assert.equal(echoed["mask"], null);
  assert.equal(echoed["mask_blur"], 2);
  assert.equal(echoed["inpainting_mask_invert"], 1);
  assert.equal(echoed["denoising_strength"], 0.75);
  // include_init_images: the pictures come back as sent, as A1111 does then.
  const included = await api(
    server,
    "POST",
    "/sdapi/v1/img2img",
    { prompt: "a door", init_images: [source], mask, include_init_images: true, width: 128, height: 128, steps: 2 },
    TOKEN_AS_PASSWORD,
  );
  assert.equal(included.status, 200, JSON.stringify(included.json));
  const back = included.json["parameters"] as Record<string, unknown>;
  assert.deepEqual(back["init_images"], [source]);
  assert.equal(back["mask"], mask);
  assert.equal(back["include_init_images"], true);
  const after = await api(server, "GET", "/v1/predictions?page_size=1", undefined, authHeaders());
  const q = (after.json["results"] as Record<string, unknown>[])[0] as Record<string, unknown>;
  assert.equal(q["model"], "stability-ai/stable-diffusion-inpainting");
  assert.equal(q["status"], "succeeded");

  // Malformed base64, a picture that is not one, no picture, and no img2img for the other checkpoint.
  const bad = (body: Record<string, unknown>) =>
    api(server, "POST", "/sdapi/v1/img2img", { prompt: "x", steps: 2, ...body }, TOKEN_AS_PASSWORD);
  const malformed = await bad({ init_images: ["!!!not base64!!!"] });
  assert.equal(malformed.status, 422, JSON.stringify(malformed.json));
  assert.deepEqual((malformed.json["detail"] as { loc: unknown[] }[])[0]?.loc, ["body", "init_images"]);
  const badMask = await bad({ init_images: [source], mask: "%%%", mask_blur: 4 });
  assert.equal(badMask.status, 422);
  assert.deepEqual((badMask.json["detail"] as { loc: unknown[] }[])[0]?.loc, ["body", "mask"]);
  const notPicture = await bad({ init_images: [source], mask: Buffer.from("plain text").toString("base64") });
  assert.equal(notPicture.status, 422);
  assert.equal((await bad({ init_images: [] })).status, 422);
  assert.equal((await bad({})).status, 422);
  const other = await bad({
    init_images: [source],
    override_settings: { sd_model_checkpoint: OTHER_MODEL },
  });
  assert.equal(other.status, 404);
  assert.match(other.json["detail"] as string, /img2img is not served/);
});
