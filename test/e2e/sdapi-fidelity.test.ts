/**
 * /sdapi/v1 answers held to what AUTOMATIC1111 (1.10) answers for the same request, on a real
 * server: each PNG's "parameters" is that image's infotext (create_infotext), seeds and subseeds
 * are seed + i unwrapped, styles are reported, img2img reports its checkpoint, inpainting writes
 * the extra parameters its init adds, and /progress honours skip_current_image.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import { crc32, deflateSync } from "node:zlib";
import { decode } from "fast-png";
import { api, eventually, newDataDir, type Sdserve, startSdserve, TOKEN } from "./server.js";

let server: Sdserve;
const AUTH = {
  Authorization: `Basic ${Buffer.from(`anyone:${TOKEN}`).toString("base64")}`,
  "Content-Type": "application/json",
};
const CHECKPOINT = "stability-ai/stable-diffusion";

before(async () => {
  const dir = newDataDir();
  const file = path.join(dir, "models.json");
  // The checkpoint alone: its -img2img and -inpainting models are added on its weights.
  writeFileSync(file, JSON.stringify({ models: { [CHECKPOINT]: { weights: "tiny-random" } } }));
  server = await startSdserve({ args: ["--models", file] });
});
after(async () => {
  await server?.stop();
});

interface Answer {
  parameters: Record<string, unknown>;
  info: Record<string, unknown>;
  /** Each image's PNG "parameters" text. */
  texts: string[];
  sizes: [number, number][];
}

async function call(route: "txt2img" | "img2img", body: Record<string, unknown>): Promise<Answer> {
  const res = await api(server, "POST", `/sdapi/v1/${route}`, body, AUTH);
  assert.equal(res.status, 200, JSON.stringify(res.json));
  const pngs = (res.json["images"] as string[]).map((b64) => decode(Buffer.from(b64, "base64")));
  return {
    parameters: res.json["parameters"] as Record<string, unknown>,
    info: JSON.parse(res.json["info"] as string) as Record<string, unknown>,
    texts: pngs.map((p) => (p.text as Record<string, string> | undefined)?.["parameters"] ?? ""),
    sizes: pngs.map((p) => [p.width, p.height]),
  };
}

/** The "Key: value" pairs of an infotext's last line, as A1111's parse_generation_parameters splits them. */
function pairsOf(infotext: string): Record<string, string> {
  const last = infotext.split("\n").at(-1) ?? "";
  const out: Record<string, string> = {};
  for (const m of last.matchAll(/\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)/g)) {
    out[m[1] as string] = m[2] as string;
  }
  return out;
}

test("txt2img: each PNG's parameters are its infotext; seeds and subseeds seed + i, unwrapped; styles reported", async () => {
  const a = await call("txt2img", {
    prompt: "a lighthouse, (dusk:1.2)",
    negative_prompt: "fog",
    width: 128,
    height: 128,
    steps: 2,
    batch_size: 2,
    // Past A1111's random draw (below 2³² − 2): A1111 takes it, and image 2 is seed + 1.
    seed: 4294967293,
    subseed: 77,
    styles: ["none served"],
  });
  assert.deepEqual(a.info["all_seeds"], [4294967293, 4294967294]);
  assert.equal(a.info["subseed"], 77);
  assert.deepEqual(a.info["all_subseeds"], [77, 78]);
  assert.deepEqual(a.info["styles"], ["none served"]);
  assert.deepEqual(a.parameters["styles"], ["none served"]);
  assert.deepEqual(a.texts, a.info["infotexts"]);
  const pairs = pairsOf(a.texts[1] as string);
  assert.equal(pairs["Sampler"], "Euler");
  assert.equal(pairs["Schedule type"], "Automatic");
  // cfg_scale is a float field of A1111's API model: 7 is written 7.0.
  assert.equal(pairs["CFG scale"], "7.0");
  assert.equal(pairs["Seed"], "4294967294");
  assert.equal(pairs["Model"], CHECKPOINT);
  assert.equal(pairs["Model hash"], a.info["sd_model_hash"]);

  // Not sent: A1111's defaults (styles None in the request model, [] in info; a random subseed).
  const b = await call("txt2img", { prompt: "", width: 128, height: 128, steps: 1, seed: 3 });
  assert.equal(b.parameters["styles"], null);
  assert.deepEqual(b.info["styles"], []);
  assert.equal(typeof b.info["subseed"], "number");
  // create_infotext strips the text: an empty prompt leaves no blank first line.
  assert.match((b.info["infotexts"] as string[])[0] as string, /^Steps: 1, /);
  assert.deepEqual(b.texts, b.info["infotexts"]);
});

test("hires fix: the PNG's parameters are the infotext; quoting as A1111's quote; Denoising strength first among the extras", async () => {
  const a = await call("txt2img", {
    prompt: "a cat",
    width: 128,
    height: 128,
    steps: 2,
    seed: 5,
    enable_hr: true,
    hr_scale: 1.5,
    hr_second_pass_steps: 1,
    hr_prompt: 'a "big" cat',
    hr_negative_prompt: "blur, noise",
    denoising_strength: 0.5,
  });
  assert.deepEqual(a.sizes, [[192, 192]]);
  assert.deepEqual(a.texts, a.info["infotexts"]);
  const text = a.texts[0] as string;
  // Quotes alone are not quoted; a comma is (json.dumps).
  assert.match(
    text,
    /, Hires prompt: a "big" cat, Hires negative prompt: "blur, noise", Hires upscale: 1\.5, Hires steps: 1,/,
  );
  assert.match(text, /, Denoising strength: 0\.5, Hires prompt/);
  assert.deepEqual(Object.keys(a.info["extra_generation_params"] as object), [
    "Denoising strength",
    "Hires prompt",
    "Hires negative prompt",
    "Hires upscale",
    "Hires steps",
  ]);
});

test("an empty sampler_name or hr_sampler_name means the default, as A1111's `or` reads them", async () => {
  const a = await call("txt2img", {
    prompt: "a cat",
    sampler_name: "",
    sampler_index: "Euler a",
    width: 128,
    height: 128,
    steps: 1,
    seed: 1,
    enable_hr: true,
    hr_scale: 1.5,
    hr_sampler_name: "",
  });
  assert.equal(a.info["sampler_name"], "Euler a");
  assert.equal("Hires sampler" in (a.info["extra_generation_params"] as object), false);
  const b = await call("txt2img", { prompt: "a cat", sampler_name: "", width: 128, height: 128, steps: 1 });
  assert.equal(b.info["sampler_name"], "Euler");
});

/** An 8-bit RGB PNG, base64. */
function picture(width: number, height: number, pixel: (x: number, y: number) => [number, number, number]): string {
  const raw = Buffer.alloc(height * (1 + width * 3));
  for (let y = 0; y < height; y++) {
    raw[y * (1 + width * 3)] = 0;
    for (let x = 0; x < width; x++) raw.set(pixel(x, y), y * (1 + width * 3) + 1 + x * 3);
  }
  return pngOf(width, height, raw);
}

function pngOf(width: number, height: number, raw: Buffer): string {
  const chunk = (type: string, body: Buffer) => {
    const head = Buffer.alloc(4);
    head.writeUInt32BE(body.length);
    const typed = Buffer.concat([Buffer.from(type, "latin1"), body]);
    const tail = Buffer.alloc(4);
    tail.writeUInt32BE(crc32(typed));
    return Buffer.concat([head, typed, tail]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  return Buffer.concat([
    Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]),
    chunk("IHDR", ihdr),
    chunk("IDAT", deflateSync(raw)),
    chunk("IEND", Buffer.alloc(0)),
  ]).toString("base64");
}

const SOURCE = picture(96, 64, (x, y) => [(x * 2) % 256, (y * 3) % 256, 100]);
const MASK = picture(96, 64, (x, y) => (x > 30 && x < 60 && y > 20 && y < 40 ? [255, 255, 255] : [0, 0, 0]));

test("img2img: the checkpoint reported (its img2img model runs on its weights); the PNG's parameters are the infotext", async () => {
  const a = await call("img2img", {
    prompt: "at dusk",
    init_images: [`data:image/png;base64,${SOURCE}`],
    width: 128,
    height: 128,
    steps: 10,
    seed: 5,
    denoising_strength: 0.5,
  });
  assert.equal(a.info["sd_model_name"], CHECKPOINT);
  const models = await api(server, "GET", "/sdapi/v1/sd-models", undefined, AUTH);
  const listed = (models.json as unknown as { model_name: string; hash: string }[]).find(
    (m) => m.model_name === CHECKPOINT,
  );
  assert.equal(a.info["sd_model_hash"], listed?.hash);
  assert.deepEqual(a.texts, a.info["infotexts"]);
  const pairs = pairsOf(a.texts[0] as string);
  assert.equal(pairs["Model"], CHECKPOINT);
  assert.equal(pairs["Model hash"], listed?.hash);
  // The request's strength, not the engine's share of the schedule.
  assert.equal(pairs["Denoising strength"], "0.5");
  assert.deepEqual(a.info["extra_generation_params"], { "Denoising strength": 0.5 });
});

test("inpainting: Mask mode, Mask blur, Inpaint area, Masked area padding, Masked content as A1111's init adds them", async () => {
  const base = {
    prompt: "a door",
    init_images: [SOURCE],
    mask: MASK,
    width: 128,
    height: 128,
    steps: 2,
    seed: 1,
  };
  const plain = await call("img2img", base);
  assert.deepEqual(plain.texts, plain.info["infotexts"]);
  assert.equal(plain.info["sd_model_name"], CHECKPOINT);
  assert.deepEqual(plain.info["extra_generation_params"], {
    "Denoising strength": 0.75,
    "Mask blur": 4,
    "Inpaint area": "Only masked",
    "Masked area padding": 0,
    "Masked content": "fill",
  });
  assert.match(
    plain.texts[0] as string,
    /, Denoising strength: 0\.75, Mask blur: 4, Inpaint area: Only masked, Masked area padding: 0, Masked content: fill, Version: /,
  );

  const other = await call("img2img", {
    ...base,
    inpainting_mask_invert: 1,
    mask_blur_x: 2,
    mask_blur_y: 3,
    inpaint_full_res: false,
    inpainting_fill: 2,
  });
  // Blurs that differ: A1111's mask_blur is None, so no entry.
  assert.deepEqual(other.info["extra_generation_params"], {
    "Denoising strength": 0.75,
    "Mask mode": "Inpaint not masked",
    "Masked content": "latent noise",
  });
  const original = await call("img2img", { ...base, inpainting_fill: 1, mask_blur: 0, inpaint_full_res_padding: 8 });
  assert.deepEqual(original.info["extra_generation_params"], {
    "Denoising strength": 0.75,
    "Inpaint area": "Only masked",
    "Masked area padding": 8,
  });
});

test("inpainting with a blank mask under inpaint_full_res: img2img, as A1111 switches to it", async () => {
  const blank = picture(96, 64, () => [0, 0, 0]);
  const a = await call("img2img", {
    prompt: "a door",
    init_images: [SOURCE],
    mask: blank,
    width: 128,
    height: 128,
    steps: 2,
    seed: 1,
  });
  // img2img's answer: width × height, no mask entries; made by the checkpoint's img2img model.
  assert.deepEqual(a.sizes, [[128, 128]]);
  assert.deepEqual(a.info["extra_generation_params"], { "Denoising strength": 0.75 });
  const list = await api(server, "GET", "/v1/predictions?page_size=1", undefined, {
    Authorization: `Bearer ${TOKEN}`,
  });
  const p = (list.json["results"] as Record<string, unknown>[])[0] as Record<string, unknown>;
  assert.equal(p["model"], `${CHECKPOINT}-img2img`);
  // Without inpaint_full_res the blank mask stays: the picture comes back as it was laid over.
  const kept = await call("img2img", {
    prompt: "a door",
    init_images: [SOURCE],
    mask: blank,
    inpaint_full_res: false,
    width: 128,
    height: 128,
    steps: 2,
    seed: 1,
  });
  assert.equal((kept.info["extra_generation_params"] as Record<string, unknown>)["Masked content"], "fill");
});

test("/progress: skip_current_image leaves the preview out; without it the preview comes", async () => {
  const slow = api(
    server,
    "POST",
    "/sdapi/v1/txt2img",
    { prompt: "a slow one", width: 512, height: 512, steps: 500, seed: 2 },
    AUTH,
  );
  try {
    await eventually(async () => {
      const p = await api(server, "GET", "/sdapi/v1/progress", undefined, AUTH);
      return typeof p.json["current_image"] === "string" ? true : undefined;
    }, "a preview in /progress");
    for (const value of ["true", "1"]) {
      const skipped = await api(server, "GET", `/sdapi/v1/progress?skip_current_image=${value}`, undefined, AUTH);
      assert.equal(skipped.status, 200);
      assert.equal(skipped.json["current_image"], null);
      assert.ok(((skipped.json["state"] as Record<string, number>)["sampling_step"] ?? 0) > 0);
    }
    const shown = await api(server, "GET", "/sdapi/v1/progress?skip_current_image=false", undefined, AUTH);
    assert.equal(typeof shown.json["current_image"], "string");
    // ProgressResponse's current_task: the call running.
    assert.match(shown.json["current_task"] as string, /^task\(.+\)$/);
  } finally {
    await api(server, "POST", "/sdapi/v1/interrupt", {}, AUTH);
    await slow;
  }
  const idle = await api(server, "GET", "/sdapi/v1/progress", undefined, AUTH);
  assert.deepEqual([idle.json["progress"], idle.json["current_image"], idle.json["current_task"]], [0, null, null]);
});

test("schedule types: DPM++ 2M's Automatic is Karras, as in A1111 1.9+; Karras applies to Euler, not to Euler a", async () => {
  const req = { prompt: "a lighthouse", width: 128, height: 128, seed: 21 };
  const pixels = async (body: Record<string, unknown>) => {
    const res = await api(server, "POST", "/sdapi/v1/txt2img", { ...req, steps: 4, ...body }, AUTH);
    assert.equal(res.status, 200, JSON.stringify(res.json).slice(0, 300));
    return decode(Buffer.from((res.json["images"] as string[])[0] as string, "base64")).data;
  };
  const automatic = await pixels({ sampler_name: "DPM++ 2M" });
  assert.deepEqual(await pixels({ sampler_name: "DPM++ 2M", scheduler: "Karras" }), automatic);
  assert.deepEqual(await pixels({ sampler_name: "DPM++ 2M Karras" }), automatic);
  // A1111 reports a sampler's own schedule as Automatic (get_sampler_and_scheduler); another as itself.
  const named = await call("txt2img", { ...req, steps: 1, sampler_name: "DPM++ 2M Karras" });
  assert.equal(pairsOf(named.texts[0] as string)["Schedule type"], "Automatic");
  const euler = await call("txt2img", { ...req, steps: 1, sampler_name: "Euler", scheduler: "Karras" });
  assert.equal(pairsOf(euler.texts[0] as string)["Schedule type"], "Karras");
  // The same model through Replicate's API, DPMSolverMultistep: diffusers' own spacing, another picture.
  const plain = await api(
    server,
    "POST",
    "/v1/predictions",
    {
      version: CHECKPOINT,
      input: {
        prompt: req.prompt,
        width: req.width,
        height: req.height,
        num_inference_steps: 4,
        seed: req.seed,
        scheduler: "DPMSolverMultistep",
      },
    },
    { Authorization: `Bearer ${TOKEN}`, "Content-Type": "application/json", Prefer: "wait" },
  );
  assert.equal(plain.json["status"], "succeeded", JSON.stringify(plain.json));
  const plainPng = await (await fetch((plain.json["output"] as string[])[0] as string)).arrayBuffer();
  assert.notDeepEqual(decode(new Uint8Array(plainPng)).data, automatic);
  const uniform = await pixels({ sampler_name: "Euler" });
  assert.notDeepEqual(await pixels({ sampler_name: "Euler", scheduler: "Karras" }), uniform);
  const refused = await api(
    server,
    "POST",
    "/sdapi/v1/txt2img",
    { ...req, sampler_name: "Euler a", scheduler: "Karras" },
    AUTH,
  );
  assert.equal(refused.status, 422);
  assert.deepEqual((refused.json["detail"] as { loc: string[] }[])[0]?.loc, ["body", "scheduler"]);
});
