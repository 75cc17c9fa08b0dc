/**
 * An SDXL model through /sdapi/v1 (tiny-sdxl, real HTTP): listed as a checkpoint, txt2img and
 * img2img and the hires fix work, prompts are read in A1111's syntax (emphasis and BREAK change
 * the picture), the same seed gives the same picture, and what SDXL cannot do here is A1111's 422
 * on the field at fault (a <lora:…> tag without a lora_dir), never a failed prediction answered
 * as a 500. CLIP_stop_at_last_layers is ignored for SDXL, as A1111 ignores it there, and info says 1.
 */
import assert from "node:assert/strict";
import path from "node:path";
import { after, before, test } from "node:test";
import { decode, encode } from "fast-png";
import { readWatermark, WATERMARK_BITS } from "../../src/engine/watermark.js";
import { GOLDEN_FAMILY } from "../helpers/fixtures.js";
import { api, type Sdserve, startSdserve } from "./server.js";

const BASE = path.join(GOLDEN_FAMILY, "sdxl", "tiny-sdxl");
let server: Sdserve;
before(async () => {
  server = await startSdserve({ args: ["--model", BASE] });
});
after(async () => {
  await server?.stop();
});

const sdapi = (route: string, body: Record<string, unknown>) => api(server, "POST", `/sdapi/v1/${route}`, body);
const req = { prompt: "a lighthouse at dusk", width: 256, height: 256, steps: 2, seed: 4, sampler_name: "Euler" };

test("SDXL is a checkpoint: txt2img twice with one seed, one picture; clip skip reported as not applied", async () => {
  const models = await api(server, "GET", "/sdapi/v1/sd-models");
  assert.deepEqual(
    (models.json as unknown as { model_name: string }[]).map((m) => m.model_name),
    ["stability-ai/sdxl"],
  );
  const body = { ...req, override_settings: { CLIP_stop_at_last_layers: 2 } };
  const a = await sdapi("txt2img", body);
  assert.equal(a.status, 200, JSON.stringify(a.json));
  const b = await sdapi("txt2img", body);
  const [pa, pb] = [a, b].map((r) => decode(Buffer.from((r.json["images"] as string[])[0] as string, "base64")));
  assert.deepEqual([pa?.width, pa?.height], [256, 256]);
  assert.deepEqual(pa?.data, pb?.data);
  const info = JSON.parse(a.json["info"] as string) as Record<string, unknown>;
  assert.equal(info["clip_skip"], 1);
  // A1111 marks no picture: the watermark stability-ai/sdxl's own input applies by default is off here.
  const png = pa as NonNullable<typeof pa>;
  const rgb = new Uint8Array(png.width * png.height * 3);
  for (let i = 0; i < png.width * png.height; i++) {
    for (let k = 0; k < 3; k++) rgb[i * 3 + k] = png.data[i * png.channels + k] as number;
  }
  assert.notDeepEqual(readWatermark({ width: png.width, height: png.height, data: rgb }), WATERMARK_BITS);
  assert.equal(info["sd_model_name"], "stability-ai/sdxl");

  const source = (a.json["images"] as string[])[0] as string;
  const i2i = await sdapi("img2img", {
    ...req,
    init_images: [source],
    denoising_strength: 0.5,
    width: 256,
    height: 192,
  });
  assert.equal(i2i.status, 200, JSON.stringify(i2i.json));
  const out = decode(Buffer.from((i2i.json["images"] as string[])[0] as string, "base64"));
  assert.deepEqual([out.width, out.height], [256, 192]);
  // resize_mode 3 (latent upscale): the picture encoded at its own size, its latents resized to
  // width × height, as A1111 does on SDXL too; not the picture resize of resize_mode 0.
  const latent = await sdapi("img2img", { ...req, init_images: [source], resize_mode: 3, width: 192, height: 256 });
  assert.equal(latent.status, 200, JSON.stringify(latent.json));
  const l = decode(Buffer.from((latent.json["images"] as string[])[0] as string, "base64"));
  assert.deepEqual([l.width, l.height], [192, 256]);
  const pixel = await sdapi("img2img", { ...req, init_images: [source], resize_mode: 0, width: 192, height: 256 });
  assert.notEqual((latent.json["images"] as string[])[0], (pixel.json["images"] as string[])[0]);
  const listed = (await api(server, "GET", "/v1/predictions?page_size=2")).json["results"] as {
    input: Record<string, unknown>;
  }[];
  // The resize_mode 3 prediction got the picture at its own size (256×256), not resized to 192×256.
  const sent = decode(Buffer.from(String(listed[1]?.input["image"]).replace(/^data:[^,]*,/, ""), "base64"));
  assert.deepEqual([sent.width, sent.height], [256, 256]);
});

test("img2img on SDXL runs A1111's step count: int(denoising × steps) + 1 of steps", async () => {
  const made = await sdapi("txt2img", req);
  const source = (made.json["images"] as string[])[0] as string;
  for (const [d, runs] of [
    [0.5, 6],
    [0.75, 8],
  ] as const) {
    const res = await sdapi("img2img", { ...req, steps: 10, init_images: [source], denoising_strength: d });
    assert.equal(res.status, 200, JSON.stringify(res.json));
    const listed = (await api(server, "GET", "/v1/predictions")).json["results"] as { id: string }[];
    const logs = (await api(server, "GET", `/v1/predictions/${listed[0]?.id}`)).json["logs"] as string;
    // A1111: int(min(d, 0.999) × 10) + 1 steps run, and are counted (diffusers' count would be int(d × 10)).
    assert.match(logs, new RegExp(`\\| ${runs}/${runs} \\[`));
    assert.doesNotMatch(logs, new RegExp(`\\| ${runs - 1}/${runs - 1} \\[`));
  }
});

test("inpainting_fill 2 and 3 on SDXL: the area to repaint starts from a fresh draw or zeros, as on SD", async () => {
  const made = await sdapi("txt2img", req);
  const source = (made.json["images"] as string[])[0] as string;
  // The right half repaints: a white-on-black mask of the picture's size.
  const white = decode(Buffer.from(source, "base64"));
  const mask = Buffer.from(
    encode({
      width: white.width,
      height: white.height,
      channels: 3,
      data: Uint8Array.from({ length: white.width * white.height * 3 }, (_, i) =>
        Math.floor(i / 3) % white.width >= white.width / 2 ? 255 : 0,
      ),
    }),
  ).toString("base64");
  const pictures: string[] = [];
  for (const inpainting_fill of [1, 2, 3]) {
    const res = await sdapi("img2img", {
      ...req,
      steps: 4,
      init_images: [source],
      mask,
      inpainting_fill,
      denoising_strength: 0.5,
      inpaint_full_res: false,
    });
    assert.equal(res.status, 200, JSON.stringify(res.json));
    const info = JSON.parse(res.json["info"] as string) as Record<string, Record<string, unknown>>;
    const content = { 1: undefined, 2: "latent noise", 3: "latent nothing" }[inpainting_fill];
    assert.equal(info["extra_generation_params"]?.["Masked content"], content);
    pictures.push((res.json["images"] as string[])[0] as string);
  }
  assert.equal(new Set(pictures).size, 3, "each fill makes its own picture");
});

test("the hires fix on SDXL: hr_scale × the size, both passes' steps, the same seed the same picture", async () => {
  for (const hr_upscaler of ["Latent", "None"]) {
    const body = {
      ...req,
      width: 128,
      height: 128,
      enable_hr: true,
      hr_scale: 1.5,
      hr_upscaler,
      hr_second_pass_steps: 1,
    };
    const a = await sdapi("txt2img", { ...body, denoising_strength: 0.5 });
    assert.equal(a.status, 200, JSON.stringify(a.json));
    const png = decode(Buffer.from((a.json["images"] as string[])[0] as string, "base64"));
    assert.deepEqual([png.width, png.height], [192, 192]);
    const info = JSON.parse(a.json["info"] as string) as Record<string, unknown>;
    assert.deepEqual([info["width"], info["height"]], [128, 128]);
    const listed = (await api(server, "GET", "/v1/predictions")).json["results"] as { id: string }[];
    const logs = (await api(server, "GET", `/v1/predictions/${listed[0]?.id}`)).json["logs"] as string;
    assert.match(logs, /\| 3\/3 \[/);
    assert.doesNotMatch(logs, /\| 4\/3 \[/);
    const again = await sdapi("txt2img", { ...body, denoising_strength: 0.5 });
    assert.equal((again.json["images"] as string[])[0], (a.json["images"] as string[])[0]);
    // The second pass is real: another denoising strength, another picture.
    const other = await sdapi("txt2img", { ...body, denoising_strength: 0.9 });
    assert.notEqual((other.json["images"] as string[])[0], (a.json["images"] as string[])[0]);
  }
});

test("A1111's syntax on SDXL: emphasis, BREAK and a negative prompt change the picture", async () => {
  const pixels = async (body: Record<string, unknown>) => {
    const r = await sdapi("txt2img", { ...req, ...body });
    assert.equal(r.status, 200, JSON.stringify(r.json));
    return decode(Buffer.from((r.json["images"] as string[])[0] as string, "base64")).data;
  };
  const plain = await pixels({});
  // An empty negative prompt is zeros, as A1111's SDXL conditioning makes it: as good as none.
  assert.deepEqual(await pixels({ negative_prompt: "" }), plain);
  for (const body of [
    { prompt: "a (lighthouse:1.5) at dusk" },
    { prompt: "a lighthouse BREAK at dusk" },
    { negative_prompt: "(blurry:1.3), dark" },
  ]) {
    assert.notDeepEqual(await pixels(body), plain, JSON.stringify(body));
  }
});

test("what SDXL is not served with here: A1111's 422 on the field", async () => {
  for (const [body, field] of [
    [{ prompt: "a lighthouse <lora:x:1>" }, "prompt"],
    [{ negative_prompt: "blurry <hypernet:x:1>" }, "negative_prompt"],
  ] as const) {
    const res = await sdapi("txt2img", { ...req, ...body });
    assert.equal(res.status, 422, JSON.stringify(res.json));
    const detail = res.json["detail"] as { loc: string[]; msg: string }[];
    assert.deepEqual(detail[0]?.loc, ["body", field]);
  }
});

test("hostile A1111 prompts on SDXL: 422 on the field where the text alone tells, else a clear error", async () => {
  for (const [body, field, msg] of [
    [{ prompt: `${"(".repeat(1001)}x` }, "prompt", /more than 1000 opening brackets/],
    [{ negative_prompt: "a (cube:99999)" }, "negative_prompt", /emphasis 99999 is out of range/],
    [{ prompt: "x".repeat(20_001) }, "prompt", /longer than 20000 characters/],
  ] as const) {
    const res = await sdapi("txt2img", { ...req, ...body });
    assert.equal(res.status, 422, JSON.stringify(res.json).slice(0, 300));
    const detail = res.json["detail"] as { loc: string[]; msg: string }[];
    assert.deepEqual(detail[0]?.loc, ["body", field]);
    assert.match(detail[0]?.msg ?? "", msg);
  }
  // The token count needs the model's tokenizer: past 20 chunks the generation fails, saying why.
  const long = await sdapi("txt2img", { ...req, prompt: Array.from({ length: 1600 }, () => "cube").join(" ") });
  assert.match(String(long.json["errors"]), /prompt is longer than 1500 tokens \(20 chunks of 75\)/);
});
