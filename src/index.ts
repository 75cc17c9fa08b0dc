/** The HF_* variables read as Python's huggingface_hub reads them, for `resolveModelSource`'s `hub`. */
export { hubSettingsFromEnv } from "./config.js";
export * from "./engine/index.js";
