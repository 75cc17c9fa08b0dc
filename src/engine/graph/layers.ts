/**
 * The PyTorch building blocks the three networks share (Linear, Conv2d, GroupNorm,
 * LayerNorm, activations, multi-head attention), expressed as ONNX nodes over weights
 * bound from safetensors. Each mirrors the torch.nn module of the same name.
 */
import { f, type GraphBuilder } from "./onnx.js";
import type { WeightBinder } from "./weights.js";

export class Layers {
  constructor(
    readonly g: GraphBuilder,
    readonly w: WeightBinder,
  ) {}

  param(name: string, expected?: readonly number[]): string {
    return this.w.bind(this.g, name, expected);
  }

  /** torch.nn.Linear over the last axis: x·Wᵀ + b. */
  linear(x: string, prefix: string, inFeatures: number, outFeatures: number, bias = true): string {
    const weight = this.param(`${prefix}.weight`, [outFeatures, inFeatures]);
    // The transpose of a constant is folded once by onnxruntime at session creation.
    let y = this.g.op("MatMul", [x, this.g.op("Transpose", [weight], { perm: [1, 0] })]);
    if (bias) y = this.g.op("Add", [y, this.param(`${prefix}.bias`, [outFeatures])]);
    return this.lowRank(y, x, prefix, inFeatures, outFeatures);
  }

  hasLowRank(prefix: string): boolean {
    return this.w.lowRankFilter?.(prefix) === true;
  }

  /**
   * y + (x·Dᵀ)·Uᵀ for a layer the binder marks as a LoRA target, with Dᵀ [in, r] and the
   * scaled Uᵀ [r, out] fed per run, so LoRAs change per request without rebuilding or
   * re-optimising the graph (r = 0 when none applies). x is the layer's input as tokens
   * [..., in]; y its output as tokens [..., out].
   */
  lowRank(y: string, x: string, prefix: string, inFeatures: number, outFeatures: number): string {
    if (!this.hasLowRank(prefix)) return y;
    const rank = `lora_rank:${prefix}`;
    const downInput = `lora_down_t:${prefix}`;
    const upInput = `lora_up_t:${prefix}`;
    const down = this.g.input(downInput, "float32", [inFeatures, rank]);
    const up = this.g.input(upInput, "float32", [rank, outFeatures]);
    this.w.lowRankTargets.set(prefix, { inFeatures, outFeatures, downInput, upInput });
    return this.g.op("Add", [y, this.g.op("MatMul", [this.g.op("MatMul", [x, down]), up])]);
  }

  /** torch.nn.Conv2d with square kernel, "same"-style padding of (k-1)/2 unless given. */
  conv2d(
    x: string,
    prefix: string,
    inChannels: number,
    outChannels: number,
    kernel: number,
    opts: { stride?: number; padding?: number; lowRank?: boolean } = {},
  ): string {
    const weight = this.param(`${prefix}.weight`, [outChannels, inChannels, kernel, kernel]);
    const bias = this.param(`${prefix}.bias`, [outChannels]);
    const p = opts.padding ?? (kernel - 1) / 2;
    const s = opts.stride ?? 1;
    const attrs = { kernel_shape: [kernel, kernel], pads: [p, p, p, p], strides: [s, s] };
    const y = this.g.op("Conv", [x, weight, bias], attrs);
    if (opts.lowRank === false || !this.hasLowRank(prefix)) return y;
    // A LoRA on a convolution (LoCon, LCM-LoRA): down is a k×k conv to r channels with the
    // layer's stride and padding, up a 1×1 conv back; both fed per run like the linear factors.
    const rank = `lora_rank:${prefix}`;
    const downInput = `lora_down:${prefix}`;
    const upInput = `lora_up:${prefix}`;
    const down = this.g.input(downInput, "float32", [rank, inChannels, kernel, kernel]);
    const up = this.g.input(upInput, "float32", [outChannels, rank, 1, 1]);
    this.w.lowRankTargets.set(prefix, { inFeatures: inChannels, outFeatures: outChannels, downInput, upInput, kernel });
    const low = this.g.op("Conv", [x, down], attrs);
    return this.g.op("Add", [y, this.g.op("Conv", [low, up], { kernel_shape: [1, 1] })]);
  }

  /** A per-channel [C] vector reshaped to [C, 1, 1] to broadcast over NCHW. */
  private channelVector(name: string, channels: number): string {
    return this.g.op("Reshape", [this.param(name, [channels]), this.g.ints([channels, 1, 1])]);
  }

  /**
   * torch.nn.GroupNorm on NCHW: normalise each group of channels over (C/G, H, W),
   * then the per-channel affine. Spelled as InstanceNormalization over [N, G, C/G·H·W]
   * so any opset-17 runtime runs it.
   */
  groupNorm(x: string, prefix: string, channels: number, groups: number, eps: number): string {
    const g = this.g;
    const grouped = g.op("Reshape", [x, g.ints([0, groups, -1])]);
    const ones = g.const("float32", new Array(groups).fill(1));
    const zeros = g.const("float32", new Array(groups).fill(0));
    const normed = g.op("InstanceNormalization", [grouped, ones, zeros], { epsilon: f(eps) });
    const back = g.op("Reshape", [normed, g.op("Shape", [x])]);
    const scaled = g.op("Mul", [back, this.channelVector(`${prefix}.weight`, channels)]);
    return g.op("Add", [scaled, this.channelVector(`${prefix}.bias`, channels)]);
  }

  /** torch.nn.LayerNorm over the last axis. */
  layerNorm(x: string, prefix: string, dim: number, eps: number): string {
    return this.g.op(
      "LayerNormalization",
      [x, this.param(`${prefix}.weight`, [dim]), this.param(`${prefix}.bias`, [dim])],
      { axis: -1, epsilon: f(eps) },
    );
  }

  silu(x: string): string {
    return this.g.op("Mul", [x, this.g.op("Sigmoid", [x])]);
  }

  /** Exact GELU, 0.5·x·(1 + erf(x/√2)) (torch.nn.functional.gelu, approximate="none"). */
  gelu(x: string): string {
    const g = this.g;
    const erf = g.op("Erf", [g.op("Div", [x, g.scalar(Math.SQRT2)])]);
    return g.op("Mul", [g.op("Mul", [x, g.scalar(0.5)]), g.op("Add", [erf, g.scalar(1)])]);
  }

  /** OpenAI CLIP's quick_gelu: x·σ(1.702·x). */
  quickGelu(x: string): string {
    return this.g.op("Mul", [x, this.g.op("Sigmoid", [this.g.op("Mul", [x, this.g.scalar(1.702)])])]);
  }

  activation(x: string, name: string): string {
    switch (name) {
      case "silu":
      case "swish":
        return this.silu(x);
      case "gelu":
        return this.gelu(x);
      case "quick_gelu":
        return this.quickGelu(x);
      default:
        throw new Error(`activation ${name} is not supported`);
    }
  }

  /**
   * Scaled dot-product attention on [B, L, H·D] projections: softmax(q·kᵀ·scale + mask)·v,
   * heads split and merged back. `mask` is added to the scores (broadcast to [B, H, Lq, Lk]).
   */
  attention(q: string, k: string, v: string, heads: number, headDim: number, mask?: string): string {
    const g = this.g;
    if (!mask) {
      // onnxruntime's fused attention: never materialises the full [Lq, Lk] score matrix
      // on CPU (flash-attention tiling), and is faster than MatMul/Softmax/MatMul.
      return g.op(
        "MultiHeadAttention",
        [q, k, v],
        { num_heads: heads, scale: f(headDim ** -0.5) },
        { domain: "com.microsoft" },
      );
    }
    const split = (t: string, perm: number[]) =>
      g.op("Transpose", [g.op("Reshape", [t, g.ints([0, 0, heads, headDim])])], { perm });
    const qh = split(q, [0, 2, 1, 3]); // [B, H, Lq, D]
    const kt = split(k, [0, 2, 3, 1]); // [B, H, D, Lk]
    const vh = split(v, [0, 2, 1, 3]); // [B, H, Lk, D]
    let scores = g.op("Mul", [g.op("MatMul", [qh, kt]), g.scalar(headDim ** -0.5)]);
    scores = g.op("Add", [scores, mask]);
    const probs = g.op("Softmax", [scores], { axis: -1 });
    const out = g.op("Transpose", [g.op("MatMul", [probs, vh])], { perm: [0, 2, 1, 3] });
    return g.op("Reshape", [out, g.ints([0, 0, heads * headDim])]);
  }

  /** NCHW → [B, H·W, C] tokens. */
  toTokens(x: string, channels: number): string {
    const g = this.g;
    return g.op("Transpose", [g.op("Reshape", [x, g.ints([0, channels, -1])])], { perm: [0, 2, 1] });
  }

  /** [B, H·W, C] tokens → NCHW with the spatial size of `like`. */
  fromTokens(tokens: string, like: string): string {
    const g = this.g;
    return g.op("Reshape", [g.op("Transpose", [tokens], { perm: [0, 2, 1] }), g.op("Shape", [like])]);
  }
}
