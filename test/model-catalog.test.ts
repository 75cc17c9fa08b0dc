/** model-catalog.ts: the models file, per-model defaults, and version ids derived from definitions. */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import { writeSafetensors } from "../src/engine/weights/safetensors-writer.js";
import {
  CatalogError,
  fewStepKind,
  type ModelSpec,
  modelCatalog,
  modelSpec,
  REPLICATE_DEFAULTS,
  readModelsFile,
  SCHEDULERS,
  SDXL_DEFAULTS,
  STABLE_DIFFUSION_VERSION,
  versionId,
} from "../src/model-catalog.js";
import { modelDir, REPO_ROOT } from "./helpers/fixtures.js";

const tmp = mkdtempSync(path.join(os.tmpdir(), "sdserve-catalog-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

function modelsFile(content: unknown): string {
  const file = path.join(tmp, `models-${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(file, typeof content === "string" ? content : JSON.stringify(content));
  return file;
}

test("with nothing configured: stability-ai/stable-diffusion on SD 2.1, under Replicate's version id", () => {
  const [only, ...rest] = modelCatalog({});
  assert.deepEqual(rest, []);
  assert.equal(only?.name, "stability-ai/stable-diffusion");
  assert.equal(only?.weights, "stabilityai/stable-diffusion-2-1");
  assert.equal(only?.version, STABLE_DIFFUSION_VERSION);
  assert.deepEqual(only?.versionAliases, []);
  assert.deepEqual(only?.defaults, REPLICATE_DEFAULTS);
});

test("other weights make another version; Replicate's id stays an alias of stability-ai/stable-diffusion", () => {
  const tiny = modelSpec("stability-ai/stable-diffusion", "tiny-random");
  assert.match(tiny.version, /^[0-9a-f]{64}$/);
  assert.notEqual(tiny.version, STABLE_DIFFUSION_VERSION);
  assert.deepEqual(tiny.versionAliases, [STABLE_DIFFUSION_VERSION]);
  // Stable: the same definition, the same id, every time.
  assert.equal(modelSpec("stability-ai/stable-diffusion", "tiny-random").version, tiny.version);
  // Whatever defines the model changes it: weights revision, variant, defaults, name.
  const base = modelSpec("me/sd", "stabilityai/sd-turbo");
  const others = [
    modelSpec("me/sd", "stabilityai/sd-turbo@0123456789abcdef0123456789abcdef01234567"),
    modelSpec("me/sd", "stabilityai/sd-turbo", { variant: "fp16" }),
    modelSpec("me/sd", "stabilityai/sd-turbo", { defaults: { num_inference_steps: 4 } }),
    modelSpec("me/other", "stabilityai/sd-turbo"),
  ];
  assert.equal(new Set([base, ...others].map((s) => s.version)).size, 5);
  // "@main" is what no revision means.
  assert.equal(modelSpec("me/sd", "stabilityai/sd-turbo@main").version, base.version);
  assert.deepEqual(base.versionAliases, []);
  // A description is not part of what the model computes.
  assert.equal(modelSpec("me/sd", "stabilityai/sd-turbo", { description: "fast" }).version, base.version);
});

test("defaults follow the known checkpoints, and the models file overrides them", () => {
  const file = modelsFile({
    models: {
      "stability-ai/sd-turbo": { weights: "stabilityai/sd-turbo", variant: "fp16" },
      "stability-ai/sd-1.5": { weights: "stable-diffusion-v1-5/stable-diffusion-v1-5" },
      "me/custom": {
        weights: "./weights/custom",
        description: "ours",
        defaults: { width: 640, height: 384, scheduler: "K_EULER_ANCESTRAL", negative_prompt: "blurry" },
      },
    },
  });
  const [turbo, sd15, custom] = readModelsFile(file);
  assert.deepEqual(turbo?.defaults, {
    width: 512,
    height: 512,
    num_inference_steps: 1,
    guidance_scale: 1,
    scheduler: "K_EULER",
  });
  assert.equal(turbo?.variant, "fp16");
  assert.equal(sd15?.defaults.width, 512);
  assert.equal(sd15?.defaults.num_inference_steps, 50);
  // A folder is resolved against the models file's folder.
  assert.equal(custom?.weights, path.join(tmp, "weights", "custom"));
  assert.deepEqual(custom?.defaults, {
    width: 640,
    height: 384,
    num_inference_steps: 50,
    guidance_scale: 7.5,
    scheduler: "K_EULER_ANCESTRAL",
    negative_prompt: "blurry",
  });
  assert.equal(custom?.description, "ours");
});

test("--model gives stability-ai/stable-diffusion its weights beside the models file's models", () => {
  const file = modelsFile({ models: { "stability-ai/sd-turbo": { weights: "stabilityai/sd-turbo" } } });
  assert.deepEqual(
    modelCatalog({ modelsFile: file, model: "tiny-random" }).map((s) => [s.name, s.weights]),
    [
      ["stability-ai/stable-diffusion", "tiny-random"],
      ["stability-ai/sd-turbo", "stabilityai/sd-turbo"],
    ],
  );
  // A models file alone serves what it lists.
  assert.deepEqual(
    modelCatalog({ modelsFile: file }).map((s) => s.name),
    ["stability-ai/sd-turbo"],
  );
});

test("a bad models file is refused with the file and the field", () => {
  const cases: [unknown, RegExp][] = [
    ["{", /not valid JSON/],
    [{ models: [] }, /must hold \{"models"/],
    [{ models: {} }, /lists no models/],
    [{ models: { nameless: { weights: "tiny-random" } } }, /a model name is owner\/name/],
    [{ models: { "a/b": {} } }, /models\["a\/b"\]\.weights: required/],
    [{ models: { "a/b": { weights: "tiny-random", variant: "int8" } } }, /\.variant: must be fp32 or fp16/],
    [{ models: { "a/b": { weights: "tiny-random", steps: 4 } } }, /\.steps: unknown setting/],
    [{ models: { "a/b": { weights: "tiny-random", preview_vae: 1 } } }, /\.preview_vae: must be the path/],
    [{ models: { "a/b": { weights: "tiny-random", preview_vae: " " } } }, /\.preview_vae: must be the path/],
    [{ models: { "a/b": { weights: "tiny-random", preview_vae: ["taesd"] } } }, /\.preview_vae: must be the path/],
    [
      { models: { "a/b": { weights: "tiny-random", defaults: { width: 500 } } } },
      /defaults\.width: must be one of 128/,
    ],
    [{ models: { "a/b": { weights: "tiny-random", defaults: { seed: 1 } } } }, /defaults\.seed: unknown input/],
    [{ models: { "a/b": { weights: "tiny-random", defaults: { guidance_scale: 0 } } } }, /1 turns guidance off/],
    [
      { models: { "a/b": { weights: "tiny-random", defaults: { width: 1024, height: 1024 } } } },
      /more than the largest size/,
    ],
  ];
  for (const [content, message] of cases) {
    const file = modelsFile(content);
    assert.throws(
      () => readModelsFile(file),
      (err: unknown) => {
        assert.ok(err instanceof CatalogError);
        assert.match(err.message, message);
        assert.ok(err.message.includes(file), err.message);
        return true;
      },
    );
  }
  assert.throws(() => readModelsFile(path.join(tmp, "absent.json")), /cannot be read \(ENOENT\)/);
});

test("engine fields: paths resolved against the file's folder, and each one makes a new version", () => {
  const entry = {
    weights: "./ckpt/dreamy.safetensors",
    config: "./configs/sd15",
    vae: "vae.safetensors",
    loras: [{ path: "./loras/grain.safetensors", scale: 0.6 }, { path: "/abs/style.safetensors" }],
    embeddings_dir: "./emb",
    prompt_syntax: "a1111",
    clip_skip: 2,
    lora_dir: "./loras",
  };
  const file = modelsFile({ models: { "me/dreamy": entry, "me/plain": { weights: "./ckpt/dreamy.safetensors" } } });
  const dir = path.dirname(file);
  const [dreamy, plain] = readModelsFile(file) as [ModelSpec, ModelSpec];
  assert.equal(dreamy.weights, path.join(dir, "ckpt/dreamy.safetensors"));
  assert.deepEqual(dreamy.engine, {
    config: path.join(dir, "configs/sd15"),
    vae: path.join(dir, "vae.safetensors"),
    embeddingsDir: path.join(dir, "emb"),
    loraDir: path.join(dir, "loras"),
    loras: [
      { path: path.join(dir, "loras/grain.safetensors"), scale: 0.6 },
      { path: "/abs/style.safetensors", scale: 1 },
    ],
    promptSyntax: "a1111",
    clipSkip: 2,
  });
  assert.deepEqual(plain.engine, {});
  // Without engine fields the id is what it was before they existed.
  assert.equal(
    plain.version,
    versionId({ name: "me/plain", weights: plain.weights, variant: "fp32", defaults: plain.defaults }),
  );
  const versions = new Set([plain.version, dreamy.version]);
  for (const changed of [
    { ...entry, config: "./other" },
    { ...entry, vae: "other.safetensors" },
    { ...entry, loras: [{ path: "./loras/grain.safetensors", scale: 0.7 }] },
    { ...entry, embeddings_dir: "./emb2" },
    { ...entry, prompt_syntax: "diffusers" },
    { ...entry, clip_skip: 1 },
  ]) {
    const [spec] = readModelsFile(modelsFile({ models: { "me/dreamy": changed } })) as [ModelSpec];
    versions.add(spec.version);
  }
  assert.equal(versions.size, 8);
});

test("bad engine fields are refused with the file and the field", () => {
  for (const [entry, message] of [
    [{ prompt_syntax: "comfy" }, /prompt_syntax: must be "diffusers" or "a1111"/],
    [{ clip_skip: 13 }, /clip_skip: must be an integer from 1 to 12/],
    [{ clip_skip: 1.5 }, /clip_skip: must be an integer from 1 to 12/],
    [{ loras: "x.safetensors" }, /loras: must be a list/],
    [{ loras: [{ path: "" }] }, /loras\[0\]\.path: must be/],
    [{ loras: [{ path: "a", scale: "1" }] }, /loras\[0\]\.scale: must be a number/],
    [{ loras: [{ path: "a", weight: 1 }] }, /loras\[0\]\.weight: unknown setting/],
    [{ loras: Array.from({ length: 17 }, () => ({ path: "a" })) }, /at most 16/],
    [{ vae: 7 }, /vae: must be a path/],
    [{ config: "" }, /config: must be a path/],
    [{ lora_dir: 5 }, /lora_dir: must be a path/],
  ] as const) {
    const file = modelsFile({ models: { "me/x": { weights: "tiny-random", ...entry } } });
    assert.throws(
      () => readModelsFile(file),
      (err: Error) => {
        assert.ok(err instanceof CatalogError);
        assert.ok(err.message.startsWith(file), err.message);
        assert.match(err.message, message);
        return true;
      },
    );
  }
});

test("preview_vae: per model (relative to the models file), else --preview-vae; never part of the version", () => {
  for (const dir of ["taesd-own", "taesd-main", "taesd-shared"]) {
    mkdirSync(path.join(tmp, dir), { recursive: true });
    writeFileSync(path.join(tmp, dir, "config.json"), "{}");
  }
  const shared = path.join(tmp, "taesd-shared");
  const file = modelsFile({
    models: {
      "me/own": { weights: "tiny-random", preview_vae: "./taesd-own" },
      "me/shared": { weights: "tiny-random" },
      "stability-ai/stable-diffusion": { weights: "tiny-random", preview_vae: "taesd-main" },
    },
  });
  const specs = modelCatalog({ modelsFile: file, previewVae: shared });
  const byName = Object.fromEntries(specs.map((s) => [s.name, s]));
  assert.equal(byName["me/own"]?.previewVae, path.join(tmp, "taesd-own"));
  assert.equal(byName["me/shared"]?.previewVae, shared);
  assert.equal(byName["me/own"]?.version, modelSpec("me/own", "tiny-random").version);
  // --model keeps the entry's preview decoder for stability-ai/stable-diffusion.
  const withModel = modelCatalog({ modelsFile: file, model: "tiny-random" });
  assert.equal(
    withModel.find((s) => s.name === "stability-ai/stable-diffusion")?.previewVae,
    path.join(tmp, "taesd-main"),
  );
  assert.equal(withModel.find((s) => s.name === "me/shared")?.previewVae, undefined);
  // A folder without an autoencoder's config.json is refused at start, naming where it was given.
  assert.throws(
    () => modelCatalog({ model: "tiny-random", previewVae: path.join(tmp, "absent") }),
    /--preview-vae \/ SDSERVE_PREVIEW_VAE: .* has no config\.json/,
  );
  const bad = modelsFile({ models: { "me/x": { weights: "tiny-random", preview_vae: "nowhere" } } });
  assert.throws(
    () => readModelsFile(bad),
    (err: unknown) => {
      assert.ok(err instanceof CatalogError);
      assert.match(err.message, /models\["me\/x"\]\.preview_vae: .* has no config\.json/);
      return true;
    },
  );
});

test("few-step models: LCM and Turbo get their native defaults, LCM is offered where it fits", () => {
  const lcm = modelSpec("me/lcm", "SimianLuo/LCM_Dreamshaper_v7");
  assert.equal(lcm.fewStep, "lcm");
  assert.deepEqual(lcm.defaults, {
    width: 512,
    height: 512,
    num_inference_steps: 4,
    guidance_scale: 8.5,
    scheduler: "LCM",
  });
  assert.deepEqual(lcm.schedulers, [...SCHEDULERS, "LCM"]);
  assert.equal(lcm.guidanceMinimum, 0);
  const turbo = modelSpec("stability-ai/sd-turbo", "stabilityai/sd-turbo");
  assert.equal(turbo.fewStep, "turbo");
  assert.equal(turbo.defaults.num_inference_steps, 1);
  assert.deepEqual(turbo.schedulers, [...SCHEDULERS]);
  assert.equal(
    modelSpec("a/b", "stabilityai/sd-turbo", { defaults: { guidance_scale: 0 } }).defaults.guidance_scale,
    0,
  );
  // Replicate's model keeps Replicate's choices.
  const sd = modelSpec("stability-ai/stable-diffusion", "stabilityai/stable-diffusion-2-1");
  assert.equal(sd.version, STABLE_DIFFUSION_VERSION);
  assert.deepEqual([sd.schedulers, sd.guidanceMinimum, sd.fewStep], [[...SCHEDULERS], 1, undefined]);
  // Other weights may choose LCM (an LCM-LoRA fused in), and then it is offered.
  const fused = modelSpec("me/fused", "tiny-random", { defaults: { scheduler: "LCM", guidance_scale: 1 } });
  assert.deepEqual(fused.schedulers, [...SCHEDULERS, "LCM"]);
  assert.equal(fused.guidanceMinimum, 1);
  assert.throws(() => modelSpec("me/x", "tiny-random", { defaults: { scheduler: "Euler a" } }), /must be one of DDIM/);
});

test("a local folder is a few-step model by its configs; broken or hostile configs make an ordinary one", () => {
  const folder = (files: Record<string, string>) => {
    const dir = mkdtempSync(path.join(tmp, "weights-"));
    for (const [name, text] of Object.entries(files)) {
      mkdirSync(path.join(dir, path.dirname(name)), { recursive: true });
      writeFileSync(path.join(dir, name), text);
    }
    return dir;
  };
  const lcmUnet = folder({ "unet/config.json": JSON.stringify({ time_cond_proj_dim: 256 }) });
  assert.equal(fewStepKind(lcmUnet), "lcm");
  assert.equal(modelSpec("me/a", lcmUnet).defaults.guidance_scale, 8.5);
  const lcmScheduler = folder({ "scheduler/scheduler_config.json": JSON.stringify({ _class_name: "LCMScheduler" }) });
  assert.equal(fewStepKind(lcmScheduler), "lcm");
  // No w-embedding input: LCM-LoRA-fused weights run without guidance.
  assert.equal(modelSpec("me/b", lcmScheduler).defaults.guidance_scale, 1);
  const trailing = { _class_name: "EulerDiscreteScheduler", timestep_spacing: "trailing" };
  assert.equal(fewStepKind(folder({ "scheduler/scheduler_config.json": JSON.stringify(trailing) })), "turbo");
  const ancestral = folder({
    "scheduler/scheduler_config.json": JSON.stringify({ ...trailing, _class_name: "EulerAncestralDiscreteScheduler" }),
  });
  assert.equal(fewStepKind(ancestral), "turbo");
  assert.equal(modelSpec("me/xl", ancestral).defaults.scheduler, "K_EULER_ANCESTRAL");
  assert.equal(modelSpec("me/xl", "stabilityai/sdxl-turbo").defaults.num_inference_steps, 1);
  const leading = { ...trailing, timestep_spacing: "leading" };
  assert.equal(fewStepKind(folder({ "scheduler/scheduler_config.json": JSON.stringify(leading) })), undefined);
  for (const text of ["{", "null", "[1]", '"x"', JSON.stringify({ time_cond_proj_dim: null }), "\u0000".repeat(64)]) {
    const dir = folder({ "unet/config.json": text, "scheduler/scheduler_config.json": text });
    assert.equal(fewStepKind(dir), undefined, text);
    assert.deepEqual(modelSpec("me/c", dir).defaults, { ...REPLICATE_DEFAULTS, width: 512, height: 512 });
  }
  assert.equal(fewStepKind(path.join(tmp, "absent")), undefined);
  assert.equal(fewStepKind("tiny-random"), undefined);
});

describe("SDXL models", () => {
  const sdxlFolder = path.resolve(REPO_ROOT, "../shared/fixtures/golden-family/sdxl/tiny-sdxl");

  test("stability-ai/sdxl with a refiner: Replicate's SDXL defaults, folders resolved against the file", () => {
    const file = modelsFile({
      models: { "stability-ai/sdxl": { weights: sdxlFolder, refiner: "./refiner" } },
    });
    const [spec] = readModelsFile(file);
    assert.equal(spec?.family, "sdxl");
    assert.equal(spec?.refiner, path.join(tmp, "refiner"));
    assert.deepEqual(spec?.defaults, SDXL_DEFAULTS);
    // The refiner is part of the definition: another refiner, another version.
    const other = modelSpec("stability-ai/sdxl", sdxlFolder, { refiner: "/elsewhere" });
    assert.notEqual(other.version, spec?.version);
    assert.notEqual(modelSpec("stability-ai/sdxl", sdxlFolder).version, spec?.version);
  });

  test("an SDXL folder under any name is SDXL; --model with one serves stability-ai/sdxl", () => {
    assert.equal(modelSpec("me/xl", sdxlFolder).family, "sdxl");
    assert.equal(modelSpec("me/xl", "stabilityai/stable-diffusion-xl-base-1.0").family, "sdxl");
    assert.equal(modelSpec("me/sd", "tiny-random").family, undefined);
    const [main] = modelCatalog({ model: sdxlFolder });
    assert.equal(main?.name, "stability-ai/sdxl");
    assert.equal(main?.defaults.width, 1024);
    // The SD models keep their ids: a refiner joins the definition only where there is one.
    assert.equal(
      modelSpec("stability-ai/stable-diffusion", "stabilityai/stable-diffusion-2-1").version,
      STABLE_DIFFUSION_VERSION,
    );
  });

  test("an SDXL single-file checkpoint is SDXL (told from its keys); an SD 1.x one and an unreadable file are not", async () => {
    const bias = (name: string) => ({ name, dtype: "F32" as const, shape: [2], data: new Float32Array(2) });
    const xlFile = path.join(tmp, "xl.safetensors");
    await writeSafetensors(xlFile, [
      bias("model.diffusion_model.out.2.bias"),
      bias("conditioner.embedders.1.model.ln_final.bias"),
    ]);
    const sdFile = path.join(tmp, "sd.safetensors");
    await writeSafetensors(sdFile, [
      bias("model.diffusion_model.out.2.bias"),
      bias("cond_stage_model.transformer.text_model.final_layer_norm.bias"),
    ]);
    const broken = path.join(tmp, "broken.safetensors");
    writeFileSync(broken, Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]));
    assert.equal(modelSpec("me/xl", xlFile).family, "sdxl");
    assert.equal(modelCatalog({ model: xlFile })[0]?.name, "stability-ai/sdxl");
    assert.equal(modelSpec("me/sd", sdFile).family, undefined);
    assert.equal(modelSpec("me/broken", broken).family, undefined);
  });

  test("SDXL defaults take SDXL's sizes, schedulers and guidance; SD's stay as they were", () => {
    const xl = (defaults: unknown) => modelSpec("stability-ai/sdxl", sdxlFolder, { defaults });
    assert.equal(xl({ width: 1152, height: 896, scheduler: "HeunDiscrete", guidance_scale: 30 }).defaults.width, 1152);
    for (const bad of [
      { width: 1001 },
      { width: 4096 },
      { width: 2048, height: 2048 },
      { scheduler: "KLMS" },
      { guidance_scale: 51 },
    ]) {
      assert.throws(() => xl(bad), CatalogError, JSON.stringify(bad));
    }
    assert.throws(() => modelSpec("me/sd", "tiny-random", { defaults: { scheduler: "HeunDiscrete" } }), CatalogError);
  });

  test("a refiner beside weights that are not SDXL is refused", () => {
    assert.throws(
      () => modelSpec("me/sd", "tiny-random", { refiner: "/r" }),
      /refiner: a refiner goes with SDXL weights/,
    );
    assert.throws(() => modelSpec("stability-ai/sdxl", modelDir("tiny-sd1"), { refiner: "/r" }), /is not SDXL/);
  });

  test('"replicate_weights": false turns off per-request LoRAs: a 422 naming the setting, a version of its own', async () => {
    const { StableDiffusionAdapter } = await import("../src/server/models/stable-diffusion.js");
    const file = modelsFile({
      models: {
        "stability-ai/sdxl": { weights: sdxlFolder, replicate_weights: false },
        "me/xl": { weights: sdxlFolder },
      },
    });
    const [off, on] = readModelsFile(file) as [ModelSpec, ModelSpec];
    assert.equal(off.engine.replicateWeights, false);
    assert.notEqual(off.version, modelSpec("stability-ai/sdxl", sdxlFolder).version);
    const input = { prompt: "x", replicate_weights: "https://example.com/lora.tar" };
    const offAdapter = new StableDiffusionAdapter({ spec: off });
    assert.deepEqual(offAdapter.weightsInputs, []);
    assert.deepEqual(
      offAdapter.validateInput(input).map((f) => f.field),
      ["input.replicate_weights"],
    );
    assert.match(offAdapter.validateInput(input)[0]?.description ?? "", /"replicate_weights": false/);
    const onAdapter = new StableDiffusionAdapter({ spec: on });
    assert.deepEqual(onAdapter.weightsInputs, ["replicate_weights"]);
    assert.deepEqual(onAdapter.validateInput(input), []);
    const bad = modelsFile({ models: { "stability-ai/sdxl": { weights: sdxlFolder, replicate_weights: "no" } } });
    assert.throws(() => readModelsFile(bad), /replicate_weights: must be true or false/);
  });

  test("a refiner that is not a non-empty string is refused, naming the field", () => {
    for (const refiner of ["", 3, null, ["a"]]) {
      const file = modelsFile({ models: { "stability-ai/sdxl": { weights: sdxlFolder, refiner } } });
      assert.throws(() => readModelsFile(file), /\.refiner: must be/);
    }
  });
});

test("a models file names one checkpoint of a hub repository as owner/name/file.safetensors", () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), "sdserve-catalog-hubfile-"));
  try {
    const file = path.join(dir, "models.json");
    writeFileSync(
      file,
      JSON.stringify({
        models: {
          "me/hub-file": { weights: "someone/checkpoints/v1/model.safetensors@v2" },
          "me/xl-file": { weights: "stabilityai/stable-diffusion-xl-base-1.0/sd_xl_base_1.0.safetensors" },
          "me/local-file": { weights: "local/dir/model.safetensors" },
        },
      }),
    );
    // A local file of that path wins, as a folder wins over a hub id.
    mkdirSync(path.join(dir, "local", "dir"), { recursive: true });
    writeFileSync(path.join(dir, "local", "dir", "model.safetensors"), "");
    const [hubFile, xl, local] = readModelsFile(file) as [ModelSpec, ModelSpec, ModelSpec];
    assert.equal(hubFile.weights, "someone/checkpoints/v1/model.safetensors@v2");
    assert.equal(hubFile.family, undefined);
    assert.equal(xl.family, "sdxl", "a file of SDXL's own repository is SDXL before its download");
    assert.equal(local.weights, path.join(dir, "local", "dir", "model.safetensors"));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
