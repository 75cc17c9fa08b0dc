/**
 * AUTOMATIC1111's web UI API (/sdapi/v1), for the front-ends and scripts written for it (Open
 * WebUI, SillyTavern, …). A thin translation: each txt2img image is a prediction of the chosen
 * model through the predictions service (same queue, store, limits, per-account isolation, web
 * page), made with seed + i as A1111 numbers its images, so any one image comes back from its
 * own seed. Field names, defaults, response shapes and error shapes follow A1111's
 * modules/api/models.py, modules/api/api.py and modules/processing.py.
 *
 * What A1111 keeps globally (the checkpoint in /options, /progress, /interrupt) is kept per
 * account here: one account neither switches another's model nor sees or stops its work.
 */
import { randomInt } from "node:crypto";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import sharp from "sharp";
import {
  findLora,
  listEmbeddingFiles,
  listLoraFiles,
  ModelError,
  parseA1111Prompt,
  RequestError,
} from "../../engine/index.js";
import { urlBaseOf } from "../http/headers.js";
import { problemOf } from "../http/problem.js";
import type { ModelAdapter } from "../models/model.js";
import type { PredictionRecord } from "../predictions/prediction.js";
import type { PredictionService } from "../predictions/service.js";
import type { JsonSchema } from "../schemas/json-schema.js";
import type { RouteSchema } from "../schemas/openapi.js";

export interface A1111Options {
  service: PredictionService;
  publicBaseUrl: string | undefined;
  /** Accepts Basic (--api-auth) and Bearer; sets req.account. */
  authenticate: (req: FastifyRequest, reply: FastifyReply, done: (err?: Error) => void) => void;
  /** The server's version, reported as A1111 reports its own. */
  version: string;
}

/** A1111's error envelopes: FastAPI's validation list, or its middleware's {error, detail, body, errors}. */
export class A1111Error extends Error {
  constructor(
    readonly status: number,
    readonly body: Record<string, unknown>,
    readonly headers: Record<string, string> = {},
  ) {
    super(typeof body["detail"] === "string" ? body["detail"] : "A1111 API error");
  }
}

/** FastAPI's 422: one entry per field at fault, `loc` from the body down. */
function invalid(field: string | (string | number)[], msg: string, type = "value_error"): A1111Error {
  const loc = ["body", ...(Array.isArray(field) ? field : [field])];
  return new A1111Error(422, { detail: [{ loc, msg, type }] });
}

/**
 * The prompts' `<lora:…>` tags, checked before any prediction is made: a malformed tag or a LoRA
 * the model's lora_dir does not hold is a 422 on its field, not a failed generation.
 */
async function checkPromptTags(
  model: ModelAdapter,
  checkpoint: ModelAdapter,
  prompts: Record<"prompt" | "negative_prompt", string | undefined>,
): Promise<void> {
  const dir = model.promptFolders?.loraDir ?? checkpoint.promptFolders?.loraDir;
  for (const [field, text] of Object.entries(prompts)) {
    if (!text) continue;
    try {
      const { loras } = parseA1111Prompt(text);
      for (const tag of loras) {
        if (dir === undefined) {
          throw new RequestError(`LoRA "${tag.name}" was asked for, but ${modelName(model)} has no lora_dir`, field);
        }
        await findLora(dir, tag.name);
      }
    } catch (err) {
      if (err instanceof RequestError) throw invalid(field, err.message);
      // The operator's folder is gone: its path is not the caller's business.
      if (err instanceof ModelError) throw httpException(503, `the LoRA folder of ${modelName(model)} cannot be read`);
      throw err;
    }
  }
}

/** A1111's HTTPException, as its exception middleware writes it. */
function httpException(status: number, detail: string): A1111Error {
  return new A1111Error(status, { error: "HTTPException", detail, body: "", errors: "" });
}

/** Any error at this edge, in A1111's shapes (FastAPI's for validation, its middleware's otherwise). */
function toA1111Error(err: unknown, logFault: (err: unknown) => void): A1111Error {
  if (err instanceof A1111Error) return err;
  const problem = problemOf(err);
  if (problem?.status === 401) {
    return new A1111Error(401, { detail: "Incorrect username or password" }, { "WWW-Authenticate": "Basic" });
  }
  if (problem?.status === 400) {
    // A body that is not JSON (or not an object): FastAPI answers 422 with the decoding error.
    return new A1111Error(422, { detail: [{ loc: ["body"], msg: problem.detail, type: "value_error.jsondecode" }] });
  }
  if (problem?.status === 422) {
    const fields = (problem.extra["invalid_fields"] ?? []) as { field: string; description: string; type: string }[];
    return new A1111Error(422, {
      detail: fields.map((f) => ({
        loc: [
          "body",
          ...f.field
            .replace(/^input\./, "")
            .split(".")
            .filter(Boolean),
        ],
        msg: f.description,
        type: `value_error.${f.type}`,
      })),
    });
  }
  if (problem) {
    return new A1111Error(
      problem.status,
      { error: "HTTPException", detail: problem.detail, body: "", errors: "" },
      problem.headers,
    );
  }
  const status = (err as { statusCode?: number }).statusCode;
  if (status && status >= 400 && status < 500) return httpException(status, (err as Error).message);
  logFault(err);
  return new A1111Error(500, {
    error: "RuntimeError",
    detail: "",
    body: "",
    errors: "The server failed to handle this request.",
  });
}

/**
 * A1111 samplers (with their schedule type) and the scheduler of a model's Replicate input each
 * one is: engine/schedulers/index.ts builds the same diffusers class and config for both names.
 * A pair is offered where a served model's input lists its scheduler (stability-ai/stable-diffusion
 * lists six; models with more, such as KarrasDPM or LCM, offer more).
 */
const SAMPLER_TABLE: readonly { sampler: string; schedule: "Automatic" | "Karras"; replicate: string }[] = [
  { sampler: "Euler", schedule: "Automatic", replicate: "K_EULER" },
  { sampler: "Euler a", schedule: "Automatic", replicate: "K_EULER_ANCESTRAL" },
  { sampler: "DPM++ 2M", schedule: "Automatic", replicate: "DPMSolverMultistep" },
  { sampler: "DPM++ 2M", schedule: "Karras", replicate: "KarrasDPM" },
  { sampler: "LMS", schedule: "Automatic", replicate: "KLMS" },
  { sampler: "Heun", schedule: "Automatic", replicate: "HeunDiscrete" },
  { sampler: "DDIM", schedule: "Automatic", replicate: "DDIM" },
  { sampler: "PLMS", schedule: "Automatic", replicate: "PNDM" },
  { sampler: "UniPC", schedule: "Automatic", replicate: "UniPCMultistep" },
  { sampler: "LCM", schedule: "Automatic", replicate: "LCM" },
];
/** A1111's default (sampler_index's default in models.py). */
const DEFAULT_SAMPLER = "Euler";
/** A1111's schedule types; one it does not know means Automatic, as there. */
const KNOWN_SCHEDULES = [
  "Automatic",
  "Uniform",
  "Karras",
  "Exponential",
  "Polyexponential",
  "SGM Uniform",
  "KL Optimal",
];
const SCHEDULE_SUFFIXES = [" Karras", " Exponential"];

/** The schedulers a model's input takes (its scheduler enum). */
function schedulersOf(m: ModelAdapter): string[] {
  return ((m.schemas["scheduler"] as JsonSchema | undefined)?.enum ?? []) as string[];
}

/** A1111's txt2img defaults (StableDiffusionProcessingTxt2Img and the API model). */
const TXT2IMG_DEFAULTS = {
  prompt: "",
  negative_prompt: "",
  styles: [],
  seed: -1,
  subseed: -1,
  subseed_strength: 0,
  seed_resize_from_h: -1,
  seed_resize_from_w: -1,
  sampler_name: null,
  scheduler: null,
  batch_size: 1,
  n_iter: 1,
  steps: 50,
  cfg_scale: 7.0,
  width: 512,
  height: 512,
  restore_faces: null,
  tiling: null,
  do_not_save_samples: false,
  do_not_save_grid: false,
  eta: null,
  denoising_strength: null,
  s_min_uncond: null,
  s_churn: null,
  s_tmax: null,
  s_tmin: null,
  s_noise: null,
  override_settings: null,
  override_settings_restore_afterwards: true,
  refiner_checkpoint: null,
  refiner_switch_at: null,
  disable_extra_networks: false,
  firstpass_image: null,
  comments: null,
  enable_hr: false,
  firstphase_width: 0,
  firstphase_height: 0,
  hr_scale: 2.0,
  hr_upscaler: null,
  hr_second_pass_steps: 0,
  hr_resize_x: 0,
  hr_resize_y: 0,
  hr_checkpoint_name: null,
  hr_sampler_name: null,
  hr_scheduler: null,
  hr_prompt: "",
  hr_negative_prompt: "",
  force_task_id: null,
  sampler_index: "Euler",
  script_name: null,
  script_args: [],
  send_images: true,
  save_images: false,
  alwayson_scripts: {},
  infotext: null,
} as const;

/** More images than this in one call (batch_size × n_iter) is refused: each is a prediction. */
const MAX_IMAGES = 16;
/** A1111 draws seeds below 2³² − 1 (random.randrange(4294967294)). */
const SEED_LIMIT = 4294967294;

const integer = (minimum: number, maximum: number): JsonSchema => ({ type: "integer", minimum, maximum });

/**
 * txt2img's request as far as it is read here (StableDiffusionTxt2ImgProcessingAPI's fields; A1111
 * takes null for its optional fields, and so does this route; unknown keys are ignored). The
 * model's own limits (sizes, prompt length) are checked against the model chosen.
 */
const TXT2IMG_BODY: JsonSchema = {
  type: "object",
  properties: {
    prompt: { type: "string" },
    negative_prompt: { type: "string" },
    seed: { ...integer(-1, SEED_LIMIT - 1), description: "-1: a random seed" },
    subseed: { type: "integer", description: "Accepted; variation seeds are not made here" },
    subseed_strength: { type: "number" },
    sampler_name: { type: "string", description: "An A1111 sampler name, such as Euler a or DPM++ 2M" },
    sampler_index: { type: "string", description: "The older name of sampler_name" },
    scheduler: { type: "string", description: "Schedule type: Automatic" },
    batch_size: integer(1, MAX_IMAGES),
    n_iter: integer(1, MAX_IMAGES),
    steps: integer(1, 500),
    cfg_scale: { type: "number", minimum: 0, maximum: 100 },
    width: integer(8, 16384),
    height: integer(8, 16384),
    denoising_strength: { type: "number", minimum: 0, maximum: 1 },
    clip_skip: integer(1, 12),
    send_images: { type: "boolean" },
    save_images: { type: "boolean" },
    override_settings: {
      type: "object",
      properties: {
        sd_model_checkpoint: { type: "string" },
        CLIP_stop_at_last_layers: integer(1, 12),
        sd_vae: { type: "string" },
      },
    },
    override_settings_restore_afterwards: { type: "boolean" },
  },
};

const TXT2IMG_RESPONSE: JsonSchema = {
  type: "object",
  required: ["images", "parameters", "info"],
  properties: {
    images: { type: "array", items: { type: "string", description: "A PNG, base64" } },
    parameters: { type: "object", additionalProperties: true },
    info: { type: "string", description: "JSON: seed, all_seeds, infotexts, …" },
  },
};
const ANY_OBJECT: JsonSchema = { type: "object", additionalProperties: true };
const list = (items: JsonSchema): JsonSchema => ({ type: "array", items });
const CHECKPOINT: JsonSchema = {
  type: "object",
  required: ["title", "model_name", "hash", "sha256", "filename", "config"],
  properties: {
    title: { type: "string" },
    model_name: { type: "string" },
    hash: { type: "string" },
    sha256: { type: "string" },
    filename: { type: "string" },
    config: { type: "null" },
  },
};
/** A1111's routes in /openapi.json: HTTP Basic (--api-auth) or a token. */
const doc = (summary: string, response: JsonSchema): RouteSchema => ({
  summary,
  security: [{ basicAuth: [] }, { bearerAuth: [] }],
  response: { 200: response },
});

/** img2img's request: txt2img's, the pictures, and how the mask is read. */
const IMG2IMG_BODY: JsonSchema = {
  ...TXT2IMG_BODY,
  required: ["init_images"],
  properties: {
    ...TXT2IMG_BODY.properties,
    init_images: {
      type: "array",
      items: { type: "string", description: "A picture: base64 or a data: URI (the first is used)" },
    },
    mask: { type: "string", description: "White = repaint; base64 or a data: URI" },
    inpainting_mask_invert: integer(0, 1),
    mask_blur: integer(0, 64),
    resize_mode: integer(0, 3),
    inpainting_fill: integer(0, 3),
    inpaint_full_res: { type: "boolean" },
  },
};

interface Img2ImgBody extends Txt2ImgBody {
  init_images?: string[];
  mask?: string;
  inpainting_mask_invert?: number;
  mask_blur?: number;
}

interface Txt2ImgBody {
  prompt?: string;
  negative_prompt?: string;
  seed?: number;
  sampler_name?: string;
  sampler_index?: string;
  scheduler?: string;
  batch_size?: number;
  n_iter?: number;
  steps?: number;
  cfg_scale?: number;
  width?: number;
  height?: number;
  denoising_strength?: number;
  clip_skip?: number;
  send_images?: boolean;
  override_settings?: { sd_model_checkpoint?: string; CLIP_stop_at_last_layers?: number; sd_vae?: string };
  override_settings_restore_afterwards?: boolean;
}

/** 10 hex characters, as A1111's short checkpoint hash; ours is the version id's start. */
function shortHash(m: ModelAdapter): string {
  return m.version.id.slice(0, 10);
}
function modelName(m: ModelAdapter): string {
  return `${m.model.owner}/${m.model.name}`;
}
function modelTitle(m: ModelAdapter): string {
  return `${modelName(m)} [${shortHash(m)}]`;
}

/** A checkpoint as A1111 accepts one: its title, name, short hash or full hash. */
function findCheckpoint(models: readonly ModelAdapter[], name: string): ModelAdapter | undefined {
  const wanted = name.trim();
  return models.find(
    (m) => modelTitle(m) === wanted || modelName(m) === wanted || shortHash(m) === wanted || m.version.id === wanted,
  );
}

/** A model A1111 clients can use as a checkpoint for txt2img: one whose input takes no picture. */
function makesFromText(m: ModelAdapter): boolean {
  const props = (m.schemas["Input"] as JsonSchema | undefined)?.properties ?? {};
  return !Object.hasOwn(props, "image");
}

function inputPropsOf(m: ModelAdapter): Record<string, JsonSchema> {
  return ((m.schemas["Input"] as JsonSchema | undefined)?.properties ?? {}) as Record<string, JsonSchema>;
}

/** The model whose loaded networks `m` runs on (img2img and inpainting beside a checkpoint). */
function sharesWeightsOf(m: ModelAdapter): string | undefined {
  return (m as { spec?: { sharesWeightsOf?: string } }).spec?.sharesWeightsOf;
}

/** A1111 sends pictures as raw base64 or as data: URIs; the model's file inputs take data: URIs. */
function dataUri(picture: string): string {
  return /^data:/i.test(picture) ? picture : `data:image/png;base64,${picture}`;
}

/**
 * img2img's picture inputs: the first init image, and the mask with A1111's inpainting_mask_invert
 * and mask_blur applied (white = repaint, as both A1111 and the inpainting model read it).
 */
async function pictureInputs(body: Img2ImgBody): Promise<{ image: string; mask: string | undefined }> {
  const first = body.init_images?.[0];
  if (typeof first !== "string")
    throw invalid("init_images", "ensure this value has at least 1 items", "value_error.list.min_items");
  const image = dataUri(first);
  if (body.mask === undefined) return { image, mask: undefined };
  const invert = body.inpainting_mask_invert === 1;
  const blur = body.mask_blur ?? 4;
  if (!invert && blur === 0) return { image, mask: dataUri(body.mask) };
  const raw = body.mask.replace(/^data:[^,]*,/i, "");
  if (!/^[A-Za-z0-9+/\s]*={0,2}\s*$/.test(raw)) throw invalid("mask", "has invalid base64");
  try {
    let mask = sharp(Buffer.from(raw, "base64")).removeAlpha().greyscale();
    if (invert) mask = mask.negate();
    // PIL's GaussianBlur(radius) is a Gaussian of that standard deviation; sharp takes sigma ≥ 0.3.
    if (blur > 0) mask = mask.blur(Math.max(0.3, blur));
    return { image, mask: `data:image/png;base64,${(await mask.png().toBuffer()).toString("base64")}` };
  } catch {
    throw invalid("mask", "is not a PNG, JPEG or WebP image");
  }
}

/** Where the model's Input schema puts its limits (sizes are an enum there). */
function sizesOf(m: ModelAdapter): number[] {
  return ((m.schemas["width"] as JsonSchema | undefined)?.enum ?? []) as number[];
}

interface Job {
  id: string;
  step: number;
  steps: number;
  done: boolean;
  preview: Uint8Array | undefined;
}

/** One txt2img call of an account: its predictions, for /progress, /interrupt and /skip. */
interface Task {
  jobs: Job[];
  startedAt: number;
  timestamp: string;
  unsubscribe: (() => void)[];
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/** The sampler and schedule of a request, as A1111 resolves them ("DPM++ 2M Karras" is sampler + schedule). */
function resolveSampler(
  samplerName: string | null,
  scheduler: string | null,
): { sampler: string; schedule: string; replicate: string } {
  let sampler = (samplerName ?? DEFAULT_SAMPLER).trim();
  let schedule = (scheduler ?? "Automatic").trim();
  // "DPM++ 2M Karras": the sampler and schedule type in one name, as A1111 before 1.9 named them.
  for (const suffix of SCHEDULE_SUFFIXES) {
    if (sampler.toLowerCase().endsWith(suffix.toLowerCase())) {
      sampler = sampler.slice(0, -suffix.length);
      schedule = suffix.trim();
    }
  }
  const rows = SAMPLER_TABLE.filter((r) => r.sampler.toLowerCase() === sampler.toLowerCase());
  if (rows.length === 0) throw httpException(404, "Sampler not found");
  const known = KNOWN_SCHEDULES.find((k) => k.toLowerCase() === schedule.toLowerCase()) ?? "Automatic";
  const row = rows.find((r) => r.schedule === known);
  if (!row) {
    throw invalid("scheduler", `schedule type ${known} is not available for ${rows[0]?.sampler} here; use Automatic`);
  }
  return { sampler: row.sampler, schedule: row.schedule, replicate: row.replicate };
}

function jobTimestamp(d: Date): string {
  return d.toISOString().replace(/[-:T]/g, "").slice(0, 14);
}

/** A1111's infotext: the prompt, the negative prompt, then "Key: value" pairs. */
function infotext(p: {
  prompt: string;
  negative: string;
  steps: number;
  sampler: string;
  schedule: string;
  cfg: number;
  seed: number;
  width: number;
  height: number;
  model: ModelAdapter;
  version: string;
}): string {
  const pairs = [
    `Steps: ${p.steps}`,
    `Sampler: ${p.sampler}`,
    `Schedule type: ${p.schedule}`,
    `CFG scale: ${p.cfg}`,
    `Seed: ${p.seed}`,
    `Size: ${p.width}x${p.height}`,
    `Model hash: ${shortHash(p.model)}`,
    `Model: ${modelName(p.model)}`,
    `Version: sdserve ${p.version}`,
  ];
  return `${p.prompt}${p.negative ? `\nNegative prompt: ${p.negative}` : ""}\n${pairs.join(", ")}`;
}

export async function a1111Routes(app: FastifyInstance, opts: A1111Options): Promise<void> {
  const { service } = opts;
  /** Each account's checkpoint (A1111's sd_model_checkpoint option). */
  const checkpoints = new Map<string, ModelAdapter>();
  /** Each account's txt2img calls in flight. */
  const tasks = new Map<string, Set<Task>>();
  // Models that take a picture (img2img, inpainting) are not checkpoints to A1111 clients.
  const served = service.models.filter(makesFromText);
  const current = (account: string) => checkpoints.get(account) ?? served[0];

  app.setErrorHandler((err, req, reply) => {
    const e = toA1111Error(err, (error) => req.log.error({ err: error }, "A1111 request failed"));
    for (const [k, v] of Object.entries(e.headers)) reply.header(k, v);
    return reply.code(e.status).send(e.body);
  });
  app.addHook("onRequest", opts.authenticate);
  // What is not served here (img2img, extras, …) answers as FastAPI does for a path it does not know.
  app.setNotFoundHandler((_req, reply) => reply.code(404).send({ detail: "Not Found" }));

  // A1111's optional fields take null as "not given": so do these routes, before their schemas are checked.
  app.addHook("preValidation", (req, _reply, done) => {
    const strip = (o: unknown) => {
      if (!isRecord(o)) return;
      for (const [key, value] of Object.entries(o)) if (value === null) delete o[key];
    };
    strip(req.body);
    if (isRecord(req.body)) strip(req.body["override_settings"]);
    done();
  });

  app.get("/sd-models", { schema: doc("The served models as A1111 checkpoints", list(CHECKPOINT)) }, async () =>
    served.map((m) => ({
      title: modelTitle(m),
      model_name: modelName(m),
      hash: shortHash(m),
      sha256: m.version.id,
      filename: modelName(m),
      config: null,
    })),
  );

  const optionsOf = (account: string) => {
    const m = current(account);
    return {
      sd_model_checkpoint: m ? modelTitle(m) : null,
      sd_checkpoint_hash: m?.version.id ?? null,
      sd_vae: "Automatic",
      CLIP_stop_at_last_layers: 1,
      samples_format: "png",
      sd_checkpoints_limit: served.length,
    };
  };
  app.get("/options", { schema: doc("The account's options: sd_model_checkpoint", ANY_OBJECT) }, async (req) =>
    optionsOf(req.account),
  );
  const optionsPost = {
    ...doc("Switches the account's checkpoint; the other options sent are accepted and not kept", { type: "null" }),
    body: { type: "object", properties: { sd_model_checkpoint: { type: "string" } } },
  };
  app.post("/options", { schema: optionsPost }, async (req) => {
    const wanted = (req.body as { sd_model_checkpoint?: string } | undefined)?.sd_model_checkpoint;
    if (wanted !== undefined) {
      const m = findCheckpoint(served, wanted);
      if (!m) throw httpException(404, `model ${JSON.stringify(wanted)} not found`);
      checkpoints.set(req.account, m);
    }
    // Every other option sent back (the whole object from GET, as Open WebUI does) is accepted and kept by nobody.
    return null;
  });

  // What some served model can run: its input's schedulers, in A1111's names.
  const offered = SAMPLER_TABLE.filter((r) => served.some((m) => schedulersOf(m).includes(r.replicate)));
  app.get("/samplers", { schema: doc("The samplers served", list(ANY_OBJECT)) }, async () =>
    [...new Set(offered.map((r) => r.sampler))].map((name) => ({ name, aliases: [], options: {} })),
  );
  app.get("/schedulers", { schema: doc("The schedule types served", list(ANY_OBJECT)) }, async () =>
    [...new Set(["Automatic", ...offered.map((r) => r.schedule)])].map((label) => ({
      name: label.toLowerCase(),
      label,
      aliases: null,
      default_rho: -1,
      need_inner_model: false,
    })),
  );
  app.get("/upscalers", { schema: doc("Upscalers: None (hires fix is not made here)", list(ANY_OBJECT)) }, async () => [
    { name: "None", model_name: null, model_path: null, model_url: null, scale: 4 },
  ]);
  app.get("/latent-upscale-modes", { schema: doc("Latent upscale modes: none", list(ANY_OBJECT)) }, async () => []);
  app.get("/sd-vae", { schema: doc("VAEs to swap in: none", list(ANY_OBJECT)) }, async () => []);
  app.get(
    "/loras",
    { schema: doc("The LoRA files the account's checkpoint can call (its lora_dir)", list(ANY_OBJECT)) },
    async (req) => {
      const dir = current(req.account)?.promptFolders?.loraDir;
      if (dir === undefined) return [];
      // A folder gone since start lists nothing here; a prompt naming one of its LoRAs says why.
      const files = await listLoraFiles(dir).catch(() => []);
      return files.map((f) => ({ name: f.name, alias: f.name, path: f.path, metadata: {} }));
    },
  );
  app.get(
    "/embeddings",
    { schema: doc("The textual-inversion embeddings of the account's checkpoint (its embeddings_dir)", ANY_OBJECT) },
    async (req) => {
      const m = current(req.account);
      const dir = m?.promptFolders?.embeddingsDir;
      const loaded: Record<string, unknown> = {};
      for (const e of dir === undefined ? [] : await listEmbeddingFiles(dir)) {
        loaded[e.name] = {
          step: null,
          sd_checkpoint: null,
          sd_checkpoint_name: null,
          shape: e.width,
          vectors: e.vectors,
        };
      }
      return { loaded, skipped: {} };
    },
  );
  app.get("/cmd-flags", { schema: doc("The flags A1111 clients look for", ANY_OBJECT) }, async () => ({
    api: true,
    api_auth: null,
  }));

  app.get("/progress", { schema: doc("The account's txt2img calls in flight", ANY_OBJECT) }, async (req) => {
    const mine = [...(tasks.get(req.account) ?? [])];
    const idle = {
      progress: 0,
      eta_relative: 0,
      state: {
        skipped: false,
        interrupted: false,
        stopping_generation: false,
        job: "",
        job_count: 0,
        job_timestamp: "0",
        job_no: 0,
        sampling_step: 0,
        sampling_steps: 0,
      },
      current_image: null,
      textinfo: null,
    };
    const task = mine[0];
    if (!task) return idle;
    const jobs = mine.flatMap((t) => t.jobs);
    const doneCount = jobs.filter((j) => j.done).length;
    const running = jobs.find((j) => !j.done && j.step > 0) ?? jobs.find((j) => !j.done);
    const fraction = running && running.steps > 0 ? running.step / running.steps : 0;
    const progress = Math.min(1, (doneCount + fraction) / jobs.length);
    const elapsed = (performance.now() - task.startedAt) / 1000;
    const preview = [...jobs].reverse().find((j) => j.preview)?.preview;
    return {
      progress,
      eta_relative: progress > 0 ? Math.max(0, elapsed / progress - elapsed) : 0,
      state: {
        ...idle.state,
        job: running ? `prediction ${running.id}` : "",
        job_count: jobs.length,
        job_timestamp: task.timestamp,
        job_no: doneCount,
        sampling_step: running?.step ?? 0,
        sampling_steps: running?.steps ?? 0,
      },
      current_image: preview ? Buffer.from(preview).toString("base64") : null,
      textinfo: running ? `Sampling step ${running.step}/${running.steps}` : null,
    };
  });

  const stopTask = async (account: string, task: Task, which: "all" | "current") => {
    const jobs = task.jobs.filter((j) => !j.done);
    const targets = which === "all" ? jobs : jobs.slice(0, 1);
    await Promise.all(targets.map((j) => service.cancel(account, j.id).catch(() => undefined)));
  };
  const stop = async (account: string, which: "all" | "current") => {
    for (const task of tasks.get(account) ?? []) await stopTask(account, task, which);
    return {};
  };
  app.post("/interrupt", { schema: doc("Stops the account's txt2img calls", ANY_OBJECT) }, async (req) =>
    stop(req.account, "all"),
  );
  app.post("/skip", { schema: doc("Stops the image being made now; the call goes on", ANY_OBJECT) }, async (req) =>
    stop(req.account, "current"),
  );

  const txt2imgSchema = {
    ...doc("Makes images from a prompt: one prediction per image, seed + i", TXT2IMG_RESPONSE),
    body: TXT2IMG_BODY,
  };
  app.post("/txt2img", { schema: txt2imgSchema }, (req, reply) => generate(req, reply, "txt2img"));
  const img2imgSchema = {
    ...doc("Makes images from a picture (and a mask: inpainting): one prediction per image", TXT2IMG_RESPONSE),
    body: IMG2IMG_BODY,
  };
  app.post("/img2img", { schema: img2imgSchema }, (req, reply) => generate(req, reply, "img2img"));

  async function generate(req: FastifyRequest, reply: FastifyReply, mode: "txt2img" | "img2img") {
    // The schema (TXT2IMG_BODY, IMG2IMG_BODY) has checked every type and range; A1111's defaults fill the rest.
    const body = (req.body ?? {}) as Img2ImgBody;
    const prompt = body.prompt ?? "";
    const negative = body.negative_prompt ?? "";
    const steps = body.steps ?? TXT2IMG_DEFAULTS.steps;
    const cfg = body.cfg_scale ?? TXT2IMG_DEFAULTS.cfg_scale;
    const width = body.width ?? TXT2IMG_DEFAULTS.width;
    const height = body.height ?? TXT2IMG_DEFAULTS.height;
    const batchSize = body.batch_size ?? 1;
    const nIter = body.n_iter ?? 1;
    if (batchSize * nIter > MAX_IMAGES) {
      throw invalid("batch_size", `batch_size × n_iter is at most ${MAX_IMAGES} here`);
    }
    const seedIn = body.seed ?? -1;
    const sendImages = body.send_images ?? true;
    const { sampler, schedule, replicate } = resolveSampler(
      body.sampler_name ?? body.sampler_index ?? null,
      body.scheduler ?? null,
    );

    const overrides = body.override_settings ?? {};
    let model = current(req.account);
    const ckpt = overrides.sd_model_checkpoint;
    if (ckpt !== undefined) {
      model = findCheckpoint(served, ckpt);
      if (!model) throw httpException(404, `model ${JSON.stringify(ckpt)} not found`);
      if (body.override_settings_restore_afterwards === false) checkpoints.set(req.account, model);
    }
    if (!model) throw httpException(503, "No model is served.");
    const vae = overrides.sd_vae;
    if (vae !== undefined && !["Automatic", "None", ""].includes(vae)) {
      throw httpException(404, `VAE ${JSON.stringify(vae)} not found`);
    }
    const clipSkip = overrides.CLIP_stop_at_last_layers ?? body.clip_skip ?? 1;
    if (!schedulersOf(model).includes(replicate)) {
      const names = SAMPLER_TABLE.filter((r) => schedulersOf(model as ModelAdapter).includes(r.replicate)).map((r) =>
        r.schedule === "Automatic" ? r.sampler : `${r.sampler} (${r.schedule})`,
      );
      throw invalid(
        "sampler_name",
        `${sampler} with schedule type ${schedule} is not available for ${modelName(model)}; available: ${names.join(", ")}`,
      );
    }
    const checkpoint = model;
    const picture = mode === "img2img" ? await pictureInputs(body) : undefined;
    if (picture) {
      // The checkpoint's img2img or inpainting model: on its weights, with the picture inputs.
      const kind = picture.mask ? "inpainting" : "img2img";
      const needs = picture.mask ? "mask" : "prompt_strength";
      const target = service.models.find(
        (m) =>
          (modelName(m) === `${modelName(checkpoint)}-${kind}` || sharesWeightsOf(m) === modelName(checkpoint)) &&
          Object.hasOwn(inputPropsOf(m), needs),
      );
      if (!target) throw httpException(404, `${kind} is not served for ${modelName(checkpoint)}`);
      model = target;
    }
    const sizes = sizesOf(model);
    const sized = Object.hasOwn(inputPropsOf(model), "width");
    for (const [key, v] of [
      ["width", width],
      ["height", height],
    ] as const) {
      if (sized && !sizes.includes(v)) {
        throw invalid(key, `${key} must be one of ${sizes.join(", ")}`, "value_error.const");
      }
    }

    await checkPromptTags(model, checkpoint, { prompt, negative_prompt: negative });

    const seed = seedIn === -1 ? randomInt(0, SEED_LIMIT) : seedIn;
    const count = batchSize * nIter;
    const seeds = Array.from({ length: count }, (_, i) => (seed + i) % SEED_LIMIT);
    const inputProps = (model.schemas["Input"] as JsonSchema | undefined)?.properties ?? {};
    const denoising = body.denoising_strength ?? 0.75;
    const inputOf = (s: number): Record<string, unknown> => ({
      prompt,
      ...(negative ? { negative_prompt: negative } : {}),
      ...(sized ? { width, height } : {}),
      ...(picture ? { image: picture.image } : {}),
      ...(picture?.mask ? { mask: picture.mask } : {}),
      ...(picture && Object.hasOwn(inputProps, "prompt_strength") ? { prompt_strength: denoising } : {}),
      num_outputs: 1,
      num_inference_steps: steps,
      guidance_scale: cfg,
      scheduler: replicate,
      seed: s,
      // A model that takes A1111's clip skip gets it; the published SD input has no such field.
      ...(Object.hasOwn(inputProps, "clip_skip") ? { clip_skip: clipSkip } : {}),
    });
    // Every input is checked before any prediction is made: a bad one makes none.
    const fields = model.validateInput(inputOf(seeds[0] as number));
    if (fields.length > 0) {
      const a1111Name: Record<string, string> = {
        num_inference_steps: "steps",
        guidance_scale: "cfg_scale",
        scheduler: "sampler_name",
        image: "init_images",
        prompt_strength: "denoising_strength",
      };
      throw new A1111Error(422, {
        detail: fields.map((f) => {
          const name = f.field.replace(/^input\./, "");
          return { loc: ["body", a1111Name[name] ?? name], msg: f.description, type: `value_error.${f.type}` };
        }),
      });
    }

    const base = urlBaseOf(req, "/v1", opts.publicBaseUrl);
    const started = new Date();
    const task: Task = { jobs: [], startedAt: performance.now(), timestamp: jobTimestamp(started), unsubscribe: [] };
    const mine = tasks.get(req.account) ?? new Set<Task>();
    tasks.set(req.account, mine);
    mine.add(task);
    // Nobody will read the result once the client hangs up: stop this call's work (not the account's other calls).
    const onClose = () => {
      if (!reply.raw.writableFinished) void stopTask(req.account, task, "all");
    };
    reply.raw.on("close", onClose);
    let finished: (PredictionRecord | undefined)[];
    try {
      for (const s of seeds) {
        // A refusal part-way (the queue or the token's cap is full) takes back what this call made.
        const created = await service
          .create(req.account, { body: { input: inputOf(s) }, model, promptSyntax: "a1111" }, base)
          .catch(async (err: unknown) => {
            await stopTask(req.account, task, "all");
            throw err;
          });
        const job: Job = { id: created.id, step: 0, steps, done: false, preview: undefined };
        task.jobs.push(job);
        task.unsubscribe.push(
          service.events.subscribe(created.id, (change) => {
            if (change.type !== "log") return;
            const m = /\|\s*(\d+)\/(\d+)\s*\[/.exec(change.line);
            if (m) job.step = Number(m[1]);
          }),
          service.events.subscribePreviews(created.id, (p) => {
            job.step = p.step;
            job.preview = p.images[0];
          }),
        );
      }
      finished = [];
      for (const job of task.jobs) {
        finished.push(await service.waitForCompletion(job.id, Number.POSITIVE_INFINITY));
        job.done = true;
      }
    } finally {
      reply.raw.off("close", onClose);
      for (const u of task.unsubscribe) u();
      mine.delete(task);
      if (mine.size === 0) tasks.delete(req.account);
    }
    const failed = finished.find((p) => p?.status === "failed");
    if (failed) {
      throw new A1111Error(500, {
        error: "RuntimeError",
        detail: "",
        body: "",
        errors: failed.error ?? "generation failed",
      });
    }
    // Interrupted or skipped images are left out, as A1111 returns what was made.
    const images: string[] = [];
    const madeSeeds: number[] = [];
    for (const [i, p] of finished.entries()) {
      if (p?.status !== "succeeded") continue;
      madeSeeds.push(seeds[i] as number);
      if (!sendImages) continue;
      const name = p.output?.[0];
      const file = name ? await service.outputs.ofPrediction(p, name) : undefined;
      if (!file)
        throw new A1111Error(500, {
          error: "RuntimeError",
          detail: "",
          body: "",
          errors: "An output file is missing.",
        });
      images.push(Buffer.from(await file.read()).toString("base64"));
    }
    const infoSeeds = madeSeeds.length > 0 ? madeSeeds : seeds;
    const text = (s: number) =>
      infotext({
        prompt,
        negative,
        steps,
        sampler,
        schedule,
        cfg,
        seed: s,
        width,
        height,
        model,
        version: opts.version,
      });
    const info = {
      prompt,
      all_prompts: infoSeeds.map(() => prompt),
      negative_prompt: negative,
      all_negative_prompts: infoSeeds.map(() => negative),
      seed: infoSeeds[0],
      all_seeds: infoSeeds,
      subseed: infoSeeds[0],
      all_subseeds: infoSeeds,
      subseed_strength: 0,
      width,
      height,
      sampler_name: sampler,
      cfg_scale: cfg,
      steps,
      batch_size: batchSize,
      restore_faces: false,
      face_restoration_model: null,
      sd_model_name: modelName(model),
      sd_model_hash: shortHash(model),
      sd_vae_name: null,
      sd_vae_hash: null,
      seed_resize_from_w: -1,
      seed_resize_from_h: -1,
      denoising_strength: picture ? denoising : (body.denoising_strength ?? null),
      extra_generation_params: {},
      index_of_first_image: 0,
      infotexts: infoSeeds.map(text),
      styles: [],
      job_timestamp: task.timestamp,
      // What was used: a model whose input has no clip_skip reads CLIP's last layer.
      clip_skip: Object.hasOwn(inputProps, "clip_skip") ? clipSkip : 1,
      is_using_inpainting_conditioning: false,
      version: `sdserve ${opts.version}`,
    };
    const parameters = Object.fromEntries(
      Object.keys(TXT2IMG_DEFAULTS).map((k) => [
        k,
        Object.hasOwn(body, k)
          ? (body as Record<string, unknown>)[k]
          : (TXT2IMG_DEFAULTS as Record<string, unknown>)[k],
      ]),
    );
    return { images, parameters, info: JSON.stringify(info) };
  }
}
