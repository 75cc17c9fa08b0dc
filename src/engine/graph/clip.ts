/**
 * transformers' CLIPTextModel (the text encoder of SD 1.x, of SD 2.x in its OpenCLIP ViT-H
 * conversion, and SDXL's first) and CLIPTextModelWithProjection (SDXL's second) as an ONNX graph.
 *
 * input_ids [B, L] int64 → last_hidden_state [B, L, hidden] (after final_layer_norm),
 * penultimate_hidden_state [B, L, hidden] (the second-to-last layer's output, before the
 * final norm: "clip skip", and what SDXL conditions on); for deeper clip skip,
 * hidden_state_minus_<k> [B, L, hidden] for k = 3 … min(MAX_CLIP_SKIP, layers + 1):
 * transformers' hidden_states[-k], the input of layer (layers + 1 − k); and, with the
 * projection, text_embeds [B, projection_dim] (SDXL's pooled prompt embedding). Built to take
 * vectors per request (WeightBinder.extraTokenRows), it also takes extra_token_rows [E, hidden]
 * and added_token_rows (an int64 scalar): see below.
 */
import type { ConfigReader } from "./config.js";
import { Layers } from "./layers.js";
import { GraphBuilder } from "./onnx.js";
import type { WeightBinder } from "./weights.js";

/** The deepest clip skip offered (AUTOMATIC1111's setting goes to 12). */
export const MAX_CLIP_SKIP = 12;

export interface ClipTextConfig {
  hiddenSize: number;
  intermediateSize: number;
  heads: number;
  layers: number;
  maxPositions: number;
  vocabSize: number;
  act: string;
  layerNormEps: number;
  /** CLIPTextModelWithProjection's text_projection width, or null for a plain CLIPTextModel. */
  projectionDim: number | null;
  /** The pooled token: the first `eos_token_id`, or with the legacy id 2 the largest id. */
  eosTokenId: number;
}

export function readClipTextConfig(cfg: ConfigReader): ClipTextConfig {
  const arch = cfg.raw["architectures"];
  if (Array.isArray(arch) && !arch.some((a) => a === "CLIPTextModel" || a === "CLIPTextModelWithProjection")) {
    cfg.fail("architectures", `${JSON.stringify(arch)} is not a CLIP text model`);
  }
  const c: ClipTextConfig = {
    hiddenSize: cfg.int("hidden_size"),
    intermediateSize: cfg.int("intermediate_size"),
    heads: cfg.int("num_attention_heads"),
    layers: cfg.int("num_hidden_layers"),
    maxPositions: cfg.int("max_position_embeddings", 77),
    vocabSize: cfg.int("vocab_size"),
    act: cfg.str("hidden_act", "quick_gelu"),
    layerNormEps: cfg.num("layer_norm_eps", 1e-5),
    projectionDim:
      Array.isArray(arch) && arch.includes("CLIPTextModelWithProjection")
        ? cfg.int("projection_dim", cfg.int("hidden_size"))
        : null,
    eosTokenId: cfg.int("eos_token_id", 2),
  };
  if (c.hiddenSize % c.heads !== 0) cfg.fail("num_attention_heads", `does not divide hidden_size ${c.hiddenSize}`);
  if (!["quick_gelu", "gelu"].includes(c.act)) cfg.fail("hidden_act", `"${c.act}" is not supported (quick_gelu, gelu)`);
  if (c.layers < 1) cfg.fail("num_hidden_layers", "must be at least 1");
  return c;
}

export function buildClipTextGraph(cfg: ConfigReader, weights: WeightBinder): GraphBuilder {
  const c = readClipTextConfig(cfg);
  const g = new GraphBuilder("clip_text_model");
  const nn = new Layers(g, weights);
  const H = c.hiddenSize;
  const headDim = H / c.heads;

  const ids = g.input("input_ids", "int64", ["batch", "sequence"]);
  const seqLen = g.op("Slice", [g.op("Shape", [ids]), g.ints([1]), g.ints([2])]);

  const tokenEmb = nn.param("text_model.embeddings.token_embedding.weight", [c.vocabSize, H]);
  const posEmb = nn.param("text_model.embeddings.position_embedding.weight", [c.maxPositions, H]);
  const positions = g.op("Slice", [posEmb, g.ints([0]), seqLen, g.ints([0])]);
  let tokens: string;
  // The ids the legacy pooled output takes the largest of (below).
  let poolIds = (): string => ids;
  if (!weights.extraTokenRows) {
    tokens = g.op("Gather", [tokenEmb, ids], { axis: 0 });
  } else {
    // Vectors given per request: ids ≥ vocab_size pick rows of extra_token_rows [E, H] (at least
    // one row). The first added_token_rows of them (a scalar) are tokens added to the tokenizer,
    // as cog-sdxl adds Replicate's trained tokens: id vocab_size + k is the k-th added token, the
    // id transformers gives it. The rows after are textual-inversion vectors (A1111's embeddings).
    const extra = g.input("extra_token_rows", "float32", ["extra_rows", H]);
    const added = g.input("added_token_rows", "int64", []);
    const vocab = g.const("int64", [c.vocabSize], []);
    const zero = g.const("int64", [0], []);
    const isExtra = g.op("GreaterOrEqual", [ids, vocab]);
    const baseIds = g.op("Where", [isExtra, zero, ids]);
    const extraIds = g.op("Where", [isExtra, g.op("Sub", [ids, vocab]), zero]);
    // Added tokens keep their ids for pooling; textual-inversion ids count as 0 there.
    poolIds = () => g.op("Where", [g.op("Less", [ids, g.op("Add", [vocab, added])]), ids, zero]);
    tokens = g.op("Where", [
      g.op("Unsqueeze", [isExtra, g.ints([-1])]),
      g.op("Gather", [extra, extraIds], { axis: 0 }),
      g.op("Gather", [tokenEmb, baseIds], { axis: 0 }),
    ]);
  }
  let x = g.op("Add", [tokens, positions]);

  // Causal mask: position i attends to j ≤ i. transformers fills the rest with the
  // dtype's lowest value rather than -inf.
  const n = c.maxPositions;
  const maskValues = new Array<number>(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) maskValues[i * n + j] = j > i ? -3.4028234663852886e38 : 0;
  const fullMask = g.const("float32", maskValues, [n, n]);
  const mask = g.op("Slice", [fullMask, g.ints([0, 0]), g.op("Concat", [seqLen, seqLen], { axis: 0 }), g.ints([0, 1])]);

  let penultimate = x;
  const deeper: string[] = [];
  for (let i = 0; i < c.layers; i++) {
    if (i === c.layers - 1) penultimate = x;
    const k = c.layers + 1 - i;
    if (k >= 3 && k <= MAX_CLIP_SKIP) deeper[k] = x;
    const p = `text_model.encoder.layers.${i}`;
    x = g.scope(p, () => {
      let h = nn.layerNorm(x, `${p}.layer_norm1`, H, c.layerNormEps);
      const q = nn.linear(h, `${p}.self_attn.q_proj`, H, H);
      const k = nn.linear(h, `${p}.self_attn.k_proj`, H, H);
      const v = nn.linear(h, `${p}.self_attn.v_proj`, H, H);
      h = nn.linear(nn.attention(q, k, v, c.heads, headDim, mask), `${p}.self_attn.out_proj`, H, H);
      const mid = g.op("Add", [x, h]);
      h = nn.layerNorm(mid, `${p}.layer_norm2`, H, c.layerNormEps);
      h = nn.activation(nn.linear(h, `${p}.mlp.fc1`, H, c.intermediateSize), c.act);
      h = nn.linear(h, `${p}.mlp.fc2`, c.intermediateSize, H);
      return g.op("Add", [mid, h]);
    });
  }
  const last = nn.layerNorm(x, "text_model.final_layer_norm", H, c.layerNormEps);
  g.output(last, "last_hidden_state", "float32", ["batch", "sequence", H]);
  g.output(penultimate, "penultimate_hidden_state", "float32", ["batch", "sequence", H]);
  deeper.forEach((value, k) => {
    if (value !== undefined)
      g.output(g.op("Identity", [value]), `hidden_state_minus_${k}`, "float32", ["batch", "sequence", H]);
  });
  if (c.projectionDim !== null) {
    // transformers' pooled output: the final-norm state at the end-of-text token. Configs with
    // the legacy eos_token_id 2 (SDXL's) take the position of the largest id (EOS is the top id
    // of CLIP's vocabulary); others the first position holding eos_token_id. ArgMax picks the
    // first maximum. So with the legacy id an added token (ids above EOS) takes the pooled state,
    // the last-numbered one present at its first place, as in cog-sdxl; textual-inversion ids
    // count as 0, so the pooled state stays at the end-of-text token, as AUTOMATIC1111 pools.
    const key = g.op("Cast", [c.eosTokenId === 2 ? poolIds() : g.op("Equal", [ids, g.ints([c.eosTokenId])])], {
      to: 6, // int32, as transformers casts
    });
    const at = g.op("ArgMax", [key], { axis: 1, keepdims: 1 });
    const index = g.op("Expand", [g.op("Unsqueeze", [at, g.ints([2])]), g.ints([1, 1, H])]);
    const pooled = g.op("Squeeze", [g.op("GatherElements", [last, index], { axis: 1 }), g.ints([1])]);
    const embeds = nn.linear(pooled, "text_projection", H, c.projectionDim, false);
    g.output(embeds, "text_embeds", "float32", ["batch", c.projectionDim]);
  }
  return g;
}
