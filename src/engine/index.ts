/**
 * sdserve's Stable Diffusion engine: diffusers-format weights run on ONNX Runtime.
 * This module knows nothing of HTTP, queues or storage.
 */

export { type EmbeddingFile, listEmbeddingFiles } from "./embeddings.js";
export { HubError, type HubErrorKind, ModelError, RequestError } from "./errors.js";
export { generateHires, HIRES_UPSCALERS, type HiresFix, IMAGE_UPSCALERS } from "./hires.js";
export {
  cachedModel,
  formatBytes,
  type PlannedFile,
  type PullEvent,
  type PulledModel,
  type PullOptions,
  pullModel,
} from "./hub/pull.js";
export {
  formatHubFileRef,
  formatHubRef,
  type HubFileRef,
  type HubRef,
  parseHubFileId,
  parseHubId,
} from "./hub/repo-id.js";
export { DEFAULT_HUB_ENDPOINT, type HubSettings } from "./hub/settings.js";
export { type VerifiedFile, type VerifyResult, verifyCachedModel } from "./hub/verify.js";
export {
  a1111Parameters,
  decodedToImages,
  encodePng,
  type GenerationParameters,
  type RgbImage,
  withPngText,
} from "./image.js";
export {
  DEFAULT_MAX_INPUT_PIXELS,
  type DecodedImage,
  type DecodeOptions,
  decodeImage,
  type GrayImage,
  maskFromTransparency,
} from "./image-input.js";
export { canPreview, latentsToPreviewImages } from "./latent-preview.js";
export { INTERPOLATION_MODES, type InterpolationMode, interpolate, LATENT_UPSCALE_MODES } from "./latent-resize.js";
export { findLora, type LoraFile, listLoraFiles } from "./lora-dir.js";
export type { TensorF32 } from "./networks.js";
export {
  DEFAULT_SCHEDULER,
  type DenoiseResult,
  type GenerateDefaults,
  type GenerateOptions,
  type GenerateRequest,
  type GenerateResult,
  type LoadPipelineOptions,
  loadPipeline,
  Pipeline,
  type PipelineInfo,
  PROMPT_SYNTAXES,
  type PromptSyntax,
  type StepEvent,
} from "./pipeline.js";
export {
  checkEmphasis,
  type LoraTag,
  type ParsedA1111Prompt,
  type PromptPiece,
  parseA1111Prompt,
  parsePromptAttention,
} from "./prompt-a1111.js";
export { TorchCpuGenerator } from "./random/torch-cpu.js";
export type { ExecutionProvider, RuntimeOptions } from "./runtime.js";
export { SCHEDULER_NAMES } from "./schedulers/index.js";
export type { MicroConditioning, SdxlSettings } from "./sdxl.js";
export { type ModelSource, resolveModelSource } from "./sources.js";
export { TinyAutoencoderPreview } from "./taesd-preview.js";
export { ensureTinyRandomModel, TINY_RANDOM } from "./tiny-random.js";
