/** The version references a create may name, resolved among the served models. */
import { isVersionOf, type ModelAdapter } from "../models/model.js";

const HEX64 = /^[0-9a-f]{64}$/;

export function findModel(models: readonly ModelAdapter[], owner: string, name: string): ModelAdapter | undefined {
  return models.find((m) => m.model.owner === owner && m.model.name === name);
}

/** A version reference: a 64-hex id, owner/name:<id>, or owner/name (the model's latest version). */
export function resolveVersion(models: readonly ModelAdapter[], ref: string): ModelAdapter | undefined {
  const colon = ref.lastIndexOf(":");
  if (colon >= 0) {
    const name = ref.slice(0, colon);
    const id = ref.slice(colon + 1);
    const m = HEX64.test(id) ? models.find((a) => isVersionOf(a, id)) : undefined;
    return m && name === `${m.model.owner}/${m.model.name}` ? m : undefined;
  }
  if (HEX64.test(ref)) return models.find((a) => isVersionOf(a, ref));
  const [owner, name, extra] = ref.split("/");
  return owner && name && extra === undefined ? findModel(models, owner, name) : undefined;
}
