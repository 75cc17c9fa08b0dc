/**
 * Writes a model's networks as standalone ONNX files in the layout other runtimes (and
 * sdserve itself) read as "a folder of ONNX exports": text_encoder/model.onnx,
 * unet/model.onnx, vae_decoder/model.onnx, next to the tokenizer, scheduler and configs.
 * Weights are embedded, so each network must stay under protobuf's 2 GB limit. Test-only: the
 * engine reads such folders; the tests make them from the fixtures.
 */
import { closeSync, openSync, readSync } from "node:fs";
import { cp, mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { ModelError } from "../../src/engine/errors.js";
import { buildClipTextGraph } from "../../src/engine/graph/clip.js";
import { ConfigReader } from "../../src/engine/graph/config.js";
import type { GraphBuilder } from "../../src/engine/graph/onnx.js";
import { buildUNetGraph } from "../../src/engine/graph/unet.js";
import { buildVaeDecoderGraph } from "../../src/engine/graph/vae.js";
import { WeightBinder } from "../../src/engine/graph/weights.js";
import { type ComponentFiles, openModelFolder } from "../../src/engine/weights/model-folder.js";

type Builder = (cfg: ConfigReader, weights: WeightBinder) => GraphBuilder;

async function exportNetwork(files: ComponentFiles, build: Builder, outDir: string): Promise<void> {
  await mkdir(outDir, { recursive: true });
  const weights = new WeightBinder(files.name, files.tensors);
  const graph = build(new ConfigReader(files.configPath, files.config), weights);
  const bytes = [...files.tensors.values()].reduce((sum, t) => sum + t.byteLength, 0);
  if (bytes >= 2 ** 31) {
    throw new ModelError(`${(bytes / 2 ** 30).toFixed(1)} GiB of weights do not fit in one ONNX file (2 GiB at most)`, {
      file: files.dir,
    });
  }
  graph.inlineExternalData((t) => {
    const fd = openSync(path.join(weights.baseDir, t.location), "r");
    try {
      const data = new Uint8Array(t.length);
      readSync(fd, data, 0, t.length, t.offset);
      return data;
    } finally {
      closeSync(fd);
    }
  });
  await writeFile(path.join(outDir, "model.onnx"), graph.toModel());
  await writeFile(path.join(outDir, "config.json"), `${JSON.stringify(files.config, null, 2)}\n`);
}

export async function exportOnnxFolder(source: string, dest: string): Promise<void> {
  const folder = await openModelFolder(source);
  await mkdir(dest, { recursive: true });
  await cp(path.join(folder.dir, "model_index.json"), path.join(dest, "model_index.json"));
  await cp(folder.tokenizerDir, path.join(dest, "tokenizer"), { recursive: true });
  await cp(path.dirname(folder.schedulerConfigPath), path.join(dest, "scheduler"), { recursive: true });
  await exportNetwork(folder.textEncoder, buildClipTextGraph, path.join(dest, "text_encoder"));
  await exportNetwork(folder.unet, buildUNetGraph, path.join(dest, "unet"));
  await exportNetwork(folder.vae, buildVaeDecoderGraph, path.join(dest, "vae_decoder"));
}
