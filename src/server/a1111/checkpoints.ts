/**
 * The served models as A1111 checkpoints: their titles, names and short hashes, how a name finds
 * one, and what their input schemas say they take (pictures, sizes, SDXL's family).
 */

import type { ModelAdapter } from "../models/model.js";
import type { JsonSchema } from "../schemas/json-schema.js";

/** 10 hex characters, as A1111's short checkpoint hash; ours is the version id's start. */
export function shortHash(m: ModelAdapter): string {
  return m.version.id.slice(0, 10);
}
export function modelName(m: ModelAdapter): string {
  return `${m.model.owner}/${m.model.name}`;
}
export function modelTitle(m: ModelAdapter): string {
  return `${modelName(m)} [${shortHash(m)}]`;
}

/** A checkpoint as A1111 accepts one: its title, name, short hash or full hash. */
export function findCheckpoint(models: readonly ModelAdapter[], name: string): ModelAdapter | undefined {
  const wanted = name.trim();
  return models.find(
    (m) => modelTitle(m) === wanted || modelName(m) === wanted || shortHash(m) === wanted || m.version.id === wanted,
  );
}

/** An SDXL model (stability-ai/sdxl's input, the SDXL engine). */
export function isSdxl(m: ModelAdapter): boolean {
  return (m as { spec?: { family?: string } }).spec?.family === "sdxl";
}

/** A model A1111 clients can use as a checkpoint for txt2img: one whose input takes no picture. */
export function makesFromText(m: ModelAdapter): boolean {
  const props = (m.schemas["Input"] as JsonSchema | undefined)?.properties ?? {};
  return !Object.hasOwn(props, "image");
}

export function inputPropsOf(m: ModelAdapter): Record<string, JsonSchema> {
  return ((m.schemas["Input"] as JsonSchema | undefined)?.properties ?? {}) as Record<string, JsonSchema>;
}

/** The model whose loaded networks `m` runs on (img2img and inpainting beside a checkpoint). */
export function sharesWeightsOf(m: ModelAdapter): string | undefined {
  return (m as { spec?: { sharesWeightsOf?: string } }).spec?.sharesWeightsOf;
}

/** Where the model's Input schema puts its limits (sizes are an enum there). */
export function sizesOf(m: ModelAdapter): number[] {
  return ((m.schemas["width"] as JsonSchema | undefined)?.enum ?? []) as number[];
}
