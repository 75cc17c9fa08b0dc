/** Predictions to store in tests, made without the service: a store's, a dispatcher's. */
import { newCapabilityKey, newPredictionId } from "../../src/server/predictions/ids.js";
import type { PredictionRecord } from "../../src/server/predictions/prediction.js";

let clock = Date.parse("2025-03-02T10:00:00Z") * 1000;
/** Strictly increasing timestamps in the stored form, one second apart unless told. */
export function ts(stepMicros = 1_000_000): string {
  clock += stepMicros;
  const iso = new Date(Math.floor(clock / 1000)).toISOString();
  return `${iso.slice(0, -1)}${String(clock % 1000).padStart(3, "0")}Z`;
}

/** A prediction to store, starting, with a small input; `extra` overrides. */
export function record(extra: Partial<PredictionRecord> = {}): PredictionRecord {
  return {
    id: newPredictionId(),
    account: "alice",
    model: "stability-ai/stable-diffusion",
    version: "v1",
    input: { prompt: "a fox", width: 128, nested: { z: 1, a: [1, 2] } },
    logs: "",
    output: null,
    error: null,
    status: "starting",
    dataRemoved: false,
    createdAt: ts(),
    startedAt: null,
    completedAt: null,
    webhook: null,
    webhookEventsFilter: null,
    deadline: null,
    apiBase: "http://127.0.0.1:8080/v1",
    origin: "http://127.0.0.1:8080",
    filesKey: newCapabilityKey(),
    streamKey: newCapabilityKey(),
    attempts: 0,
    ...extra,
  };
}
