import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import { ModelError } from "../../src/engine/errors.js";
import { type ComponentFiles, openModelFolder } from "../../src/engine/weights/model-folder.js";
import type { SafetensorsDType } from "../../src/engine/weights/safetensors.js";
import { readTensor } from "../../src/engine/weights/safetensors.js";
import { encodeSafetensors } from "../../src/engine/weights/safetensors-writer.js";
import { FIXTURE_MODELS, modelDir, readJson } from "../helpers/fixtures.js";

const tmp = mkdtempSync(path.join(os.tmpdir(), "sdserve-model-folder-"));
after(() => rmSync(tmp, { recursive: true, force: true }));
let counter = 0;

const WEIGHTS_BASE = { text_encoder: "model", unet: "diffusion_pytorch_model", vae: "diffusion_pytorch_model" };
type Component = keyof typeof WEIGHTS_BASE;
const COMPONENTS = Object.keys(WEIGHTS_BASE) as Component[];

/** A small safetensors file; F16 and F32 hold the same values so the variant shows only in the dtype. */
function weights(names: string[], dtype: SafetensorsDType = "F32"): Uint8Array {
  return encodeSafetensors(
    names.map((name, i) => ({
      name,
      dtype,
      shape: [2],
      // 1.0 and 2.0 in float16 are 0x3c00 and 0x4000.
      data: dtype === "F16" ? Uint16Array.from([0x3c00, 0x4000]) : Float32Array.from([1 + i, 2 + i]),
    })),
  );
}

function write(file: string, content: string | Uint8Array): void {
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, content);
}

/** A model folder with model_index, tokenizer, scheduler and a config per component, but no weights. */
function skeleton(components: string[] = COMPONENTS): string {
  const dir = path.join(tmp, `model-${counter++}`);
  write(path.join(dir, "model_index.json"), JSON.stringify({ _class_name: "StableDiffusionPipeline" }));
  write(path.join(dir, "tokenizer", "vocab.json"), "{}");
  write(path.join(dir, "tokenizer", "merges.txt"), "#version: 0.2\n");
  write(path.join(dir, "scheduler", "scheduler_config.json"), JSON.stringify({ _class_name: "PNDMScheduler" }));
  for (const c of components) write(path.join(dir, c, "config.json"), JSON.stringify({ _class_name: c }));
  return dir;
}

/** Writes `<base>.safetensors` and/or `<base>.fp16.safetensors` for every component. */
function withWeights(dir: string, variants: ("fp32" | "fp16")[], only: Component[] = COMPONENTS): string {
  for (const c of only) {
    for (const v of variants) {
      const name = `${WEIGHTS_BASE[c]}${v === "fp16" ? ".fp16" : ""}.safetensors`;
      write(path.join(dir, c, name), weights([`${c}.weight`, `${c}.bias`], v === "fp16" ? "F16" : "F32"));
    }
  }
  return dir;
}

async function expectModelError(p: Promise<unknown>, file: string, pattern: RegExp): Promise<ModelError> {
  let caught: ModelError | undefined;
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof ModelError, `expected ModelError, got ${String(err)}`);
    assert.ok(err.message.includes(file), `message should name ${file}: ${err.message}`);
    assert.match(err.message, pattern);
    caught = err;
    return true;
  });
  return caught!;
}

const dtypes = (c: ComponentFiles) => new Set([...c.tensors.values()].map((t) => t.dtype));

describe("fixture models", () => {
  for (const model of FIXTURE_MODELS) {
    test(`${model} opens with every part found`, async () => {
      const dir = modelDir(model);
      const m = await openModelFolder(dir);
      assert.equal(m.dir, dir);
      assert.equal(m.variant, "fp32");
      assert.equal(m.modelIndex["_class_name"], "StableDiffusionPipeline");
      assert.equal(m.tokenizerDir, path.join(dir, "tokenizer"));
      assert.deepEqual(m.schedulerConfig, readJson(path.join(dir, "scheduler", "scheduler_config.json")));
      assert.equal(m.schedulerConfigPath, path.join(dir, "scheduler", "scheduler_config.json"));
      for (const [c, files] of [
        ["text_encoder", m.textEncoder],
        ["unet", m.unet],
        ["vae", m.vae],
      ] as const) {
        assert.equal(files.name, c);
        assert.equal(files.dir, path.join(dir, c));
        assert.equal(files.configPath, path.join(dir, c, "config.json"));
        assert.deepEqual(files.config, readJson(files.configPath));
        assert.deepEqual(files.weightFiles, [path.join(dir, c, `${WEIGHTS_BASE[c]}.safetensors`)]);
        assert.equal(files.onnxPath, undefined);
        assert.equal(files.variant, "fp32");
        assert.deepEqual(dtypes(files), new Set(["F32"]));
      }
      const te = m.textEncoder.config as { num_hidden_layers: number; hidden_size: number; vocab_size: number };
      assert.equal(m.textEncoder.tensors.size, 2 + 16 * te.num_hidden_layers + 2);
      assert.deepEqual(m.textEncoder.tensors.get("text_model.embeddings.token_embedding.weight")?.shape, [
        te.vocab_size,
        te.hidden_size,
      ]);
      const unet = m.unet.config as { block_out_channels: number[]; in_channels: number };
      assert.deepEqual(m.unet.tensors.get("conv_in.weight")?.shape, [
        unet.block_out_channels[0],
        unet.in_channels,
        3,
        3,
      ]);
      const vae = m.vae.config as { block_out_channels: number[]; latent_channels: number };
      assert.deepEqual(m.vae.tensors.get("decoder.conv_in.weight")?.shape, [
        vae.block_out_channels.at(-1),
        vae.latent_channels,
        3,
        3,
      ]);
    });
  }

  test("asking for fp16 where only fp32 exists falls back to fp32", async () => {
    const m = await openModelFolder(modelDir("tiny-sd1"), { variant: "fp16" });
    assert.equal(m.variant, "fp32");
    assert.equal(m.unet.variant, "fp32");
  });
});

describe("fp16 variant selection", () => {
  test("both present: fp32 by default, fp16 when asked", async () => {
    const dir = withWeights(skeleton(), ["fp32", "fp16"]);
    const plain = await openModelFolder(dir);
    assert.equal(plain.variant, "fp32");
    assert.deepEqual(dtypes(plain.unet), new Set(["F32"]));
    assert.deepEqual(plain.unet.weightFiles, [path.join(dir, "unet", "diffusion_pytorch_model.safetensors")]);

    const half = await openModelFolder(dir, { variant: "fp16" });
    assert.equal(half.variant, "fp16");
    for (const c of [half.textEncoder, half.unet, half.vae]) {
      assert.equal(c.variant, "fp16");
      assert.deepEqual(dtypes(c), new Set(["F16"]));
    }
    assert.deepEqual(half.textEncoder.weightFiles, [path.join(dir, "text_encoder", "model.fp16.safetensors")]);
    assert.deepEqual(Array.from(await readTensor(half.unet.tensors.get("unet.weight")!)), [1, 2]);
    const explicit32 = await openModelFolder(dir, { variant: "fp32" });
    assert.equal(explicit32.variant, "fp32");
  });

  test("fp16 files alone are used without being asked for", async () => {
    const dir = withWeights(skeleton(), ["fp16"]);
    for (const opts of [undefined, { variant: "fp32" as const }]) {
      const m = await openModelFolder(dir, opts);
      assert.equal(m.variant, "fp16");
      assert.equal(m.vae.variant, "fp16");
      assert.deepEqual(m.vae.weightFiles, [path.join(dir, "vae", "diffusion_pytorch_model.fp16.safetensors")]);
    }
  });

  test("fp16 asked, one component has only fp32: that component falls back and says so", async () => {
    const dir = withWeights(withWeights(skeleton(), ["fp32", "fp16"], ["text_encoder", "unet"]), ["fp32"], ["vae"]);
    const m = await openModelFolder(dir, { variant: "fp16" });
    assert.equal(m.variant, "fp16");
    assert.equal(m.unet.variant, "fp16");
    assert.equal(m.vae.variant, "fp32");
    assert.deepEqual(dtypes(m.vae), new Set(["F32"]));
  });
});

describe("sharded weights", () => {
  function sharded(dir: string, variant: "fp32" | "fp16", shards: Record<string, string[]>, map?: object): void {
    const weightMap: Record<string, string> = {};
    for (const [file, names] of Object.entries(shards)) {
      write(path.join(dir, "unet", file), weights(names, variant === "fp16" ? "F16" : "F32"));
      for (const n of names) weightMap[n] = file;
    }
    const indexName = `diffusion_pytorch_model.safetensors.index${variant === "fp16" ? ".fp16" : ""}.json`;
    write(
      path.join(dir, "unet", indexName),
      JSON.stringify({ metadata: { total_size: 0 }, weight_map: map ?? weightMap }),
    );
  }

  test("an index merges all shards into one map", async () => {
    const dir = withWeights(skeleton(), ["fp32"], ["text_encoder", "vae"]);
    sharded(dir, "fp32", {
      "diffusion_pytorch_model-00001-of-00002.safetensors": ["conv_in.weight", "conv_in.bias"],
      "diffusion_pytorch_model-00002-of-00002.safetensors": ["conv_out.weight"],
    });
    const m = await openModelFolder(dir);
    assert.deepEqual(m.unet.weightFiles, [
      path.join(dir, "unet", "diffusion_pytorch_model-00001-of-00002.safetensors"),
      path.join(dir, "unet", "diffusion_pytorch_model-00002-of-00002.safetensors"),
    ]);
    assert.deepEqual([...m.unet.tensors.keys()].sort(), ["conv_in.bias", "conv_in.weight", "conv_out.weight"]);
    assert.equal(m.unet.tensors.get("conv_out.weight")?.file, m.unet.weightFiles[1]);
    assert.deepEqual(Array.from(await readTensor(m.unet.tensors.get("conv_out.weight")!)), [1, 2]);
  });

  test("an fp16 index (*.safetensors.index.fp16.json) is used for the fp16 variant", async () => {
    const dir = withWeights(skeleton(), ["fp32", "fp16"], ["text_encoder", "vae"]);
    write(path.join(dir, "unet", "diffusion_pytorch_model.safetensors"), weights(["conv_in.weight"]));
    sharded(dir, "fp16", {
      "diffusion_pytorch_model.fp16-00001-of-00002.safetensors": ["conv_in.weight"],
      "diffusion_pytorch_model.fp16-00002-of-00002.safetensors": ["conv_out.weight"],
    });
    const half = await openModelFolder(dir, { variant: "fp16" });
    assert.equal(half.unet.variant, "fp16");
    assert.equal(half.unet.weightFiles.length, 2);
    assert.deepEqual(dtypes(half.unet), new Set(["F16"]));
    const full = await openModelFolder(dir);
    assert.equal(full.unet.weightFiles.length, 1);
    assert.deepEqual(dtypes(full.unet), new Set(["F32"]));
  });

  test("a tensor in two shards is an error", async () => {
    const dir = withWeights(skeleton(), ["fp32"], ["text_encoder", "vae"]);
    sharded(dir, "fp32", { "a.safetensors": ["x", "y"], "b.safetensors": ["y"] });
    const err = await expectModelError(
      openModelFolder(dir),
      path.join(dir, "unet", "b.safetensors"),
      /two weight files/,
    );
    assert.ok(err.message.includes(path.join(dir, "unet", "a.safetensors")));
    assert.equal(err.field, "y");
  });

  test("index errors: missing shard, wrong shard, shard outside the folder, no weight_map", async () => {
    const index = (dir: string) => path.join(dir, "unet", "diffusion_pytorch_model.safetensors.index.json");

    let dir = withWeights(skeleton(), ["fp32"], ["text_encoder", "vae"]);
    sharded(dir, "fp32", { "a.safetensors": ["x"] }, { x: "a.safetensors", y: "gone.safetensors" });
    await expectModelError(openModelFolder(dir), path.join(dir, "unet", "gone.safetensors"), /missing/);

    dir = withWeights(skeleton(), ["fp32"], ["text_encoder", "vae"]);
    sharded(
      dir,
      "fp32",
      { "a.safetensors": ["x"], "b.safetensors": ["y"] },
      { x: "b.safetensors", y: "b.safetensors", z: "a.safetensors" },
    );
    await expectModelError(
      openModelFolder(dir),
      index(dir),
      /weight_map\.x: index says the tensor is in b\.safetensors, but it is in a\.safetensors/,
    );

    dir = withWeights(skeleton(), ["fp32"], ["text_encoder", "vae"]);
    sharded(dir, "fp32", { "a.safetensors": ["x"] }, { x: "../vae/diffusion_pytorch_model.safetensors" });
    await expectModelError(openModelFolder(dir), index(dir), /file name in the same folder/);

    dir = withWeights(skeleton(), ["fp32"], ["text_encoder", "vae"]);
    write(index(dir), JSON.stringify({ metadata: {} }));
    await expectModelError(openModelFolder(dir), index(dir), /weight_map/);
  });
});

describe("ONNX exports", () => {
  test("Optimum layout: text_encoder/, unet/, vae_decoder/ with model.onnx", async () => {
    const dir = skeleton(["text_encoder", "unet", "vae_decoder"]);
    for (const c of ["text_encoder", "unet", "vae_decoder"]) write(path.join(dir, c, "model.onnx"), "onnx");
    const m = await openModelFolder(dir);
    assert.equal(m.textEncoder.onnxPath, path.join(dir, "text_encoder", "model.onnx"));
    assert.equal(m.unet.onnxPath, path.join(dir, "unet", "model.onnx"));
    assert.equal(m.vae.onnxPath, path.join(dir, "vae_decoder", "model.onnx"));
    assert.equal(m.vae.dir, path.join(dir, "vae_decoder"));
    assert.deepEqual(m.vae.config, { _class_name: "vae_decoder" });
    for (const c of [m.textEncoder, m.unet, m.vae]) {
      assert.equal(c.tensors.size, 0);
      assert.deepEqual(c.weightFiles, []);
      assert.equal(c.variant, undefined);
    }
  });

  test("an ONNX component may lack config.json (diffusers' old ONNX exports)", async () => {
    const dir = skeleton([]);
    for (const c of ["text_encoder", "unet", "vae_decoder"]) write(path.join(dir, c, "model.onnx"), "onnx");
    const m = await openModelFolder(dir);
    assert.deepEqual(m.unet.config, {});
    assert.equal(m.unet.configPath, path.join(dir, "unet", "config.json"));
  });

  test("safetensors win over model.onnx in the same folder", async () => {
    const dir = withWeights(skeleton(), ["fp32"]);
    write(path.join(dir, "unet", "model.onnx"), "onnx");
    const m = await openModelFolder(dir);
    assert.equal(m.unet.onnxPath, undefined);
    assert.equal(m.unet.tensors.size, 2);
  });
});

describe("missing or unreadable parts give a ModelError naming the file", () => {
  test("no model_index.json, or not JSON", async () => {
    const dir = withWeights(skeleton(), ["fp32"]);
    const index = path.join(dir, "model_index.json");
    write(index, "{ not json");
    await expectModelError(openModelFolder(dir), index, /not valid JSON/);
    unlinkSync(index);
    await expectModelError(openModelFolder(dir), index, /missing/);
    const nowhere = path.join(tmp, "no-such-model");
    await expectModelError(openModelFolder(nowhere), nowhere, /not found/);
  });

  test("missing component folder", async () => {
    const dir = withWeights(skeleton(["text_encoder", "unet"]), ["fp32"], ["text_encoder", "unet"]);
    await expectModelError(openModelFolder(dir), path.join(dir, "vae"), /component folder missing.*vae_decoder/);
  });

  test("missing config.json, or one that is not an object", async () => {
    const dir = withWeights(skeleton(), ["fp32"]);
    const config = path.join(dir, "unet", "config.json");
    write(config, "[1, 2]");
    await expectModelError(openModelFolder(dir), config, /JSON object/);
    unlinkSync(config);
    await expectModelError(openModelFolder(dir), config, /missing/);
  });

  test("no weights at all, or weights under another name", async () => {
    const dir = withWeights(skeleton(), ["fp32"], ["text_encoder", "vae"]);
    const expected = path.join(dir, "unet", "diffusion_pytorch_model.safetensors");
    await expectModelError(openModelFolder(dir), expected, /file missing, and no other weights/);
    write(path.join(dir, "unet", "unet.safetensors"), weights(["x"]));
    await expectModelError(openModelFolder(dir), expected, /found unet\.safetensors/);
  });

  for (const file of ["diffusion_pytorch_model.bin", "model.ckpt", "diffusion_pytorch_model.fp16.bin"]) {
    test(`PyTorch pickle only (${file})`, async () => {
      const dir = withWeights(skeleton(), ["fp32"], ["text_encoder", "vae"]);
      write(path.join(dir, "unet", file), "pickle");
      const err = await expectModelError(openModelFolder(dir), path.join(dir, "unet", file), /pickle/);
      assert.match(err.message, /safetensors/);
    });
  }

  test("tokenizer without merges.txt; no scheduler config", async () => {
    const dir = withWeights(skeleton(), ["fp32"]);
    const merges = path.join(dir, "tokenizer", "merges.txt");
    unlinkSync(merges);
    await expectModelError(openModelFolder(dir), merges, /missing/);
    write(merges, "#version: 0.2\n");
    const sched = path.join(dir, "scheduler", "scheduler_config.json");
    unlinkSync(sched);
    await expectModelError(openModelFolder(dir), sched, /missing/);
  });

  test("a corrupt weight file is reported, not skipped", async () => {
    const dir = withWeights(skeleton(), ["fp32", "fp16"]);
    const bad = path.join(dir, "vae", "diffusion_pytorch_model.safetensors");
    write(bad, "garbage");
    await expectModelError(openModelFolder(dir), bad, /too short/);
  });
});

describe("Hugging Face cache snapshot", () => {
  /** models--org--name/{blobs/<hash>, snapshots/<rev>/...} with every file a relative link into blobs/. */
  function snapshot(source: string): { snap: string; blobs: string } {
    const repo = path.join(tmp, `models--test--tiny-${counter++}`);
    const blobs = path.join(repo, "blobs");
    const snap = path.join(repo, "snapshots", "0123456789abcdef");
    mkdirSync(blobs, { recursive: true });
    let blobId = 0;
    const link = (rel: string) => {
      const blob = `blob${blobId++}`;
      symlinkSync(path.join(source, rel), path.join(blobs, blob));
      const target = path.join(snap, rel);
      mkdirSync(path.dirname(target), { recursive: true });
      symlinkSync(path.relative(path.dirname(target), path.join(blobs, blob)), target);
    };
    link("model_index.json");
    link("scheduler/scheduler_config.json");
    link("tokenizer/vocab.json");
    link("tokenizer/merges.txt");
    for (const c of COMPONENTS) {
      link(`${c}/config.json`);
      link(`${c}/${WEIGHTS_BASE[c]}.safetensors`);
    }
    return { snap, blobs };
  }

  test("files that are links into ../../blobs/ are read through the snapshot paths", async () => {
    const { snap } = snapshot(modelDir("tiny-sd2v"));
    const m = await openModelFolder(snap);
    const direct = await openModelFolder(modelDir("tiny-sd2v"));
    assert.equal(m.unet.tensors.size, direct.unet.tensors.size);
    assert.equal(m.unet.weightFiles[0], path.join(snap, "unet", "diffusion_pytorch_model.safetensors"));
    const info = m.unet.tensors.get("conv_in.bias")!;
    assert.equal(info.file, m.unet.weightFiles[0]);
    assert.deepEqual(await readTensor(info), await readTensor(direct.unet.tensors.get("conv_in.bias")!));
  });

  test("a dangling link (blob not downloaded) is an error, not a fallback", async () => {
    const { snap, blobs } = snapshot(modelDir("tiny-sd1"));
    rmSync(blobs, { recursive: true });
    await expectModelError(openModelFolder(snap), path.join(snap, "model_index.json"), /incomplete download/);
    mkdirSync(blobs);
    for (const name of ["model_index.json", "scheduler/scheduler_config.json"]) {
      rmSync(path.join(snap, name));
      write(path.join(snap, name), "{}");
    }
    const teWeights = path.join(snap, "text_encoder", "model.safetensors");
    await expectModelError(openModelFolder(snap), teWeights, /incomplete download/);
  });
});
