/**
 * sdserve's Stable Diffusion engine: diffusers-format weights run on ONNX Runtime.
 * This module knows nothing of HTTP, queues or storage.
 */
export { GraphBuilder } from "./graph/onnx.js";
