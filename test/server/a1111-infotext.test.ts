/**
 * The A1111 infotext as create_infotext writes it (modules/processing.py, infotext_utils.quote),
 * the hires schedule type where its sampler adds it, and the PNG text an /sdapi image carries.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { decode } from "fast-png";
import { encodePng, withPngText } from "../../src/engine/index.js";
import { addHiresSchedule } from "../../src/server/a1111/hires.js";
import { infotext, pythonFloat, quote } from "../../src/server/a1111/infotext.js";
import type { ModelAdapter } from "../../src/server/models/model.js";

const model = { model: { owner: "acme", name: "sd" }, version: { id: "0123456789abcdef" } } as unknown as ModelAdapter;
const base = {
  prompt: "a cat",
  negative: "",
  steps: 20,
  sampler: "Euler",
  schedule: "Automatic",
  cfg: 7,
  seed: 1,
  width: 512,
  height: 512,
  model,
  version: "1.2.3",
  clipSkip: 1,
  extra: [],
};

describe("infotext", () => {
  test("quote: a comma, a colon or a line break makes JSON; quotes alone are kept as they are", () => {
    assert.equal(quote('a "big" cat'), 'a "big" cat');
    assert.equal(quote("blur, noise"), '"blur, noise"');
    assert.equal(quote("ratio 1:2"), '"ratio 1:2"');
    assert.equal(quote('say "hi", then\nleave'), '"say \\"hi\\", then\\nleave"');
    assert.equal(quote("café, ünïcode"), '"café, ünïcode"');
    assert.equal(quote(3), 3);
  });

  test("float fields as Python writes them", () => {
    assert.equal(pythonFloat(7), "7.0");
    assert.equal(pythonFloat(7.5), "7.5");
    assert.equal(pythonFloat(0.75), "0.75");
  });

  test("create_infotext's order, quoting and strip", () => {
    const text = infotext({
      ...base,
      negative: "fog",
      denoising: 0.5,
      clipSkip: 2,
      extra: [
        ["Hires prompt", 'a "big" cat'],
        ["Hires negative prompt", "blur, noise"],
        ["Hires upscale", 2],
      ],
    });
    assert.equal(
      text,
      'a cat\nNegative prompt: fog\nSteps: 20, Sampler: Euler, Schedule type: Automatic, CFG scale: 7.0, Seed: 1, Size: 512x512, Model hash: 0123456789, Model: acme/sd, Denoising strength: 0.5, Clip skip: 2, Hires prompt: a "big" cat, Hires negative prompt: "blur, noise", Hires upscale: 2.0, Version: sdserve 1.2.3',
    );
    // An empty prompt: the whole text is stripped, no blank first line.
    assert.match(infotext({ ...base, prompt: "" }), /^Steps: 20, Sampler: Euler,/);
  });
});

describe("addHiresSchedule", () => {
  const extra = (): [string, string | number][] => [
    ["Hires prompt", "x"],
    ["Hires upscale", 2],
    ["Hires steps", 4],
  ];
  test("a schedule of the second pass's own, other than the first's: after the prompts, before the size", () => {
    const e = extra();
    addHiresSchedule(e, "Automatic", "Karras");
    assert.deepEqual(e, [
      ["Hires prompt", "x"],
      ["Hires schedule type", "Karras"],
      ["Hires upscale", 2],
      ["Hires steps", 4],
    ]);
  });
  test("none when the same as the first pass's, or Automatic", () => {
    for (const [first, second] of [
      ["Karras", "Karras"],
      ["Karras", "Automatic"],
      ["Automatic", "Automatic"],
    ] as const) {
      const e = extra();
      addHiresSchedule(e, first, second);
      assert.deepEqual(e, extra());
    }
  });
});

describe("withPngText", () => {
  test("replaces the text under a key, keeps the pixels and other texts", () => {
    const image = { width: 3, height: 2, data: Uint8Array.from({ length: 18 }, (_, i) => i * 13) };
    const png = encodePng(image, { parameters: "old, K_EULER", Software: "x" });
    const out = decode(withPngText(png, "parameters", "new: ünïcode"));
    assert.deepEqual(out.text, { parameters: "new: ünïcode", Software: "x" });
    assert.deepEqual(Array.from(out.data), Array.from(image.data));
    // A PNG without text gets it.
    assert.deepEqual(decode(withPngText(encodePng(image), "parameters", "p")).text, { parameters: "p" });
  });
});
