/**
 * /sdapi/v1's hires fix and img2img picture options against a real server (tiny-random, through
 * real HTTP): the hires fix with a latent mode and with "None" makes hr_scale × the size (or
 * hr_resize_x × hr_resize_y, cropped as A1111 crops), with A1111's info fields, and the same seed
 * gives the same picture; every img2img resize_mode makes width × height; inpaint_full_res leaves
 * every pixel outside the padded box as it was; hostile values are A1111's 422 with `detail`.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { decode } from "fast-png";
import { encodePng } from "../../src/engine/image.js";
import { api, type Sdserve, startSdserve } from "./server.js";

let server: Sdserve;
before(async () => {
  server = await startSdserve();
});
after(async () => {
  await server?.stop();
});

const sdapi = (route: string, body: Record<string, unknown>) => api(server, "POST", `/sdapi/v1/${route}`, body);

function answer(json: Record<string, unknown>) {
  const pngs = (json["images"] as string[]).map((b) => decode(new Uint8Array(Buffer.from(b, "base64"))));
  return { pngs, info: JSON.parse(json["info"] as string) as Record<string, unknown> };
}

/** RGB bytes of a decoded PNG (alpha dropped, if any). */
function rgbOf(png: ReturnType<typeof decode>): Uint8Array {
  const c = png.channels;
  const out = new Uint8Array(png.width * png.height * 3);
  for (let i = 0; i < png.width * png.height; i++)
    for (let k = 0; k < 3; k++) out[i * 3 + k] = png.data[i * c + k] as number;
  return out;
}

const base = { prompt: "a lighthouse", width: 128, height: 128, steps: 2, seed: 11, sampler_name: "Euler" };

describe("hires fix", () => {
  for (const upscaler of ["Latent", "Latent (bicubic antialiased)", "None"]) {
    test(`${upscaler}: hr_scale × the size, A1111's info, the same seed the same picture`, async () => {
      const body = {
        ...base,
        enable_hr: true,
        hr_scale: 2,
        hr_upscaler: upscaler,
        hr_second_pass_steps: 2,
        denoising_strength: 0.5,
      };
      const res = await sdapi("txt2img", body);
      assert.equal(res.status, 200, JSON.stringify(res.json));
      const { pngs, info } = answer(res.json);
      assert.deepEqual([pngs[0]?.width, pngs[0]?.height], [256, 256]);
      // A1111 reports the first pass's size and the hires fields among the extra parameters.
      assert.deepEqual([info["width"], info["height"], info["denoising_strength"]], [128, 128, 0.5]);
      // A1111 1.10's: its denoising strength first, then the hires fix's.
      assert.deepEqual(info["extra_generation_params"], {
        "Denoising strength": 0.5,
        "Hires upscale": 2,
        "Hires steps": 2,
        "Hires upscaler": upscaler,
      });
      const text = (info["infotexts"] as string[])[0] as string;
      assert.match(text, /Size: 128x128, /);
      assert.match(
        text,
        new RegExp(
          `Denoising strength: 0.5, Hires upscale: 2\\.0, Hires steps: 2, Hires upscaler: ${upscaler.replace(/[()]/g, "\\$&")}, Version: `,
        ),
      );
      const again = answer((await sdapi("txt2img", body)).json);
      assert.deepEqual(again.pngs[0]?.data, pngs[0]?.data);
      // The call is a prediction: its progress counts the first pass's 2 steps and the second's 2, once each.
      const listed = (await api(server, "GET", "/v1/predictions")).json["results"] as { id: string }[];
      const logs = (await api(server, "GET", `/v1/predictions/${listed[0]?.id}`)).json["logs"] as string;
      const counts = [...logs.matchAll(/\| (\d+)\/(\d+) \[/g)].map((m) => `${m[1]}/${m[2]}`);
      assert.deepEqual(counts, ["0/4", "1/4", "2/4", "3/4", "4/4"], logs);
    });
  }

  test("hr_resize_x and hr_resize_y: the first pass's ratio covered, then cropped to the box", async () => {
    const res = await sdapi("txt2img", {
      ...base,
      enable_hr: true,
      hr_resize_x: 256,
      hr_resize_y: 192,
      denoising_strength: 0.6,
    });
    assert.equal(res.status, 200, JSON.stringify(res.json));
    const { pngs, info } = answer(res.json);
    assert.deepEqual([pngs[0]?.width, pngs[0]?.height], [256, 192]);
    // No hr_upscaler: A1111's default mode, not written; no hr_second_pass_steps: the first pass's count.
    assert.deepEqual(info["extra_generation_params"], { "Denoising strength": 0.6, "Hires resize": "256x192" });
  });

  test("the upscalers and latent modes listed are the ones served", async () => {
    const ups = await api(server, "GET", "/sdapi/v1/upscalers");
    assert.deepEqual(
      (ups.json as unknown as { name: string }[]).map((u) => u.name),
      ["None", "Lanczos"],
    );
    const modes = await api(server, "GET", "/sdapi/v1/latent-upscale-modes");
    const names = (modes.json as unknown as { name: string }[]).map((m) => m.name);
    assert.equal(names.length, 6);
    for (const upscaler of [...names, "Lanczos"]) {
      const res = await sdapi("txt2img", {
        ...base,
        enable_hr: true,
        hr_upscaler: upscaler,
        hr_scale: 1.5,
        hr_second_pass_steps: 1,
      });
      assert.equal(res.status, 200, `${upscaler}: ${JSON.stringify(res.json)}`);
      assert.deepEqual([answer(res.json).pngs[0]?.width], [192]);
    }
  });
});

describe("img2img picture options", () => {
  let init: string;
  let initRgb: Uint8Array;
  before(async () => {
    const made = await sdapi("txt2img", { ...base, seed: 5 });
    init = (made.json["images"] as string[])[0] as string;
    initRgb = rgbOf(decode(new Uint8Array(Buffer.from(init, "base64"))));
  });

  test("each resize_mode makes width × height, each its own way", async () => {
    const made: Uint8Array[] = [];
    for (const resize_mode of [0, 1, 2, 3]) {
      const res = await sdapi("img2img", {
        ...base,
        init_images: [init],
        resize_mode,
        width: 192,
        height: 128,
        denoising_strength: 0.4,
      });
      assert.equal(res.status, 200, JSON.stringify(res.json));
      const { pngs } = answer(res.json);
      assert.deepEqual([pngs[0]?.width, pngs[0]?.height], [192, 128], `resize_mode ${resize_mode}`);
      made.push(rgbOf(pngs[0] as ReturnType<typeof decode>));
    }
    // Stretched, cropped, filled, and the latents stretched (3) are four different starts.
    for (let a = 0; a < 4; a++)
      for (let b = a + 1; b < 4; b++) assert.notDeepEqual(made[a], made[b], `modes ${a} and ${b}`);
  });

  test("inpaint_full_res: every pixel outside the padded box is the original's", async () => {
    // A white 16² square at (40, 40) to repaint; padding 8 makes the box (32, 32)–(64, 64).
    const maskRgb = new Uint8Array(128 * 128 * 3);
    for (let y = 40; y < 56; y++)
      for (let x = 40; x < 56; x++) maskRgb.fill(255, (y * 128 + x) * 3, (y * 128 + x) * 3 + 3);
    const mask = Buffer.from(encodePng({ width: 128, height: 128, data: maskRgb })).toString("base64");
    for (const inpainting_fill of [0, 1, 2, 3]) {
      const res = await sdapi("img2img", {
        ...base,
        init_images: [init],
        mask,
        mask_blur: 0,
        inpaint_full_res: true,
        inpaint_full_res_padding: 8,
        inpainting_fill,
        denoising_strength: 0.9,
      });
      assert.equal(res.status, 200, JSON.stringify(res.json));
      const out = answer(res.json).pngs[0];
      assert.ok(out);
      assert.deepEqual([out.width, out.height], [128, 128]);
      const rgb = rgbOf(out);
      let changed = 0;
      for (let y = 0; y < 128; y++) {
        for (let x = 0; x < 128; x++) {
          const i = (y * 128 + x) * 3;
          const inside = x >= 32 && x < 64 && y >= 32 && y < 64;
          const same = rgb[i] === initRgb[i] && rgb[i + 1] === initRgb[i + 1] && rgb[i + 2] === initRgb[i + 2];
          if (!inside) assert.ok(same, `(${x}, ${y}) changed outside the box, fill ${inpainting_fill}`);
          else if (!same) changed++;
        }
      }
      assert.ok(changed > 0, `fill ${inpainting_fill}: the masked square was repainted`);
    }
  });
});

describe("hostile values: A1111's 422 with detail, never a 500", () => {
  const cases: [string, string, Record<string, unknown>, string][] = [
    ["hr_scale 1000", "txt2img", { enable_hr: true, hr_scale: 1000 }, "hr_scale"],
    [
      "a hires size over the pixel limit",
      "txt2img",
      { enable_hr: true, width: 1024, height: 1024, hr_scale: 4 },
      "hr_scale",
    ],
    ["hr_resize_x over the limit", "txt2img", { enable_hr: true, hr_resize_x: 16384 }, "hr_resize_x"],
    ["a negative hr_resize_y", "txt2img", { enable_hr: true, hr_resize_y: -64 }, "hr_resize_y"],
    ["an unknown upscaler", "txt2img", { enable_hr: true, hr_upscaler: "R-ESRGAN 4x+" }, "hr_upscaler"],
    ["an unknown hires sampler", "txt2img", { enable_hr: true, hr_sampler_name: "Nope" }, "hr_sampler_name"],
    ["a hires fix with denoising 0", "txt2img", { enable_hr: true, denoising_strength: 0 }, "denoising_strength"],
    ["a 20,000-character hr_prompt", "txt2img", { enable_hr: true, hr_prompt: "a".repeat(20_000) }, "hr_prompt"],
    [
      "a LoRA tag in hr_prompt without a LoRA folder",
      "txt2img",
      { enable_hr: true, hr_prompt: "x <lora:nope:1>" },
      "hr_prompt",
    ],
    [
      "another hires checkpoint",
      "txt2img",
      { enable_hr: true, hr_checkpoint_name: "someone/else" },
      "hr_checkpoint_name",
    ],
    ["hr_second_pass_steps 1e9", "txt2img", { enable_hr: true, hr_second_pass_steps: 1e9 }, "hr_second_pass_steps"],
    ["a negative width", "txt2img", { width: -512 }, "width"],
    ["a negative img2img height", "img2img", { init_images: ["x"], height: -8 }, "height"],
    ["a huge img2img size", "img2img", { init_images: ["x"], width: 16384, height: 16384 }, "width"],
    ["a huge mask_blur", "img2img", { init_images: ["x"], mask: "x", mask_blur: 100000 }, "mask_blur"],
    ["a mask_blur_x string", "img2img", { init_images: ["x"], mask: "x", mask_blur_x: "wide" }, "mask_blur_x"],
    ["resize_mode 7", "img2img", { init_images: ["x"], resize_mode: 7 }, "resize_mode"],
    ["inpainting_fill −1", "img2img", { init_images: ["x"], inpainting_fill: -1 }, "inpainting_fill"],
    ["a huge padding", "img2img", { init_images: ["x"], inpaint_full_res_padding: 1e7 }, "inpaint_full_res_padding"],
  ];
  for (const [name, route, body, field] of cases) {
    test(name, async () => {
      const res = await sdapi(route, { ...base, ...body });
      assert.equal(res.status, 422, JSON.stringify(res.json));
      const detail = res.json["detail"] as { loc: unknown[]; msg: string }[];
      assert.ok(Array.isArray(detail) && detail.length > 0);
      assert.ok(
        detail.some((d) => d.loc.includes(field)),
        `${field} in ${JSON.stringify(detail)}`,
      );
    });
  }
});
