/**
 * AUTOMATIC1111's web UI API (/sdapi/v1), for the front-ends and scripts written for it (Open
 * WebUI, SillyTavern, …). A thin translation: each txt2img image is a prediction of the chosen
 * model through the predictions service (same queue, store, limits, per-account isolation, web
 * page), made with seed + i as A1111 numbers its images, so any one image comes back from its
 * own seed. Field names, defaults, response shapes and error shapes follow A1111's
 * modules/api/models.py, modules/api/api.py and modules/processing.py.
 *
 * What A1111 keeps globally (the checkpoint in /options, /progress, /interrupt) is kept per
 * account here: one account neither switches another's model nor sees or stops its work. Both
 * live in the store, not in this process: the checkpoint as an account setting, the calls in
 * flight as their predictions (each marked with its call), so that behind a load balancer any
 * node answers /options, /progress and /interrupt for a call another node is running, and a
 * restart keeps the checkpoint.
 *
 * The pieces live in server/a1111/: the request and response schemas (schemas.ts), error shapes
 * (errors.ts), the calls in flight as the store has them (calls.ts), checkpoints and samplers,
 * the hires fix's fields (hires.ts), img2img's picture preparation (img2img.ts, on the picture
 * operations of images.ts) and the infotext.
 */
import { randomInt, randomUUID } from "node:crypto";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import {
  checkEmphasis,
  findLora,
  listEmbeddingFiles,
  listLoraFiles,
  ModelError,
  parseA1111Prompt,
  RequestError,
  withPngText,
} from "../../engine/index.js";
import { callsInFlight } from "../a1111/calls.js";
import {
  findCheckpoint,
  inputPropsOf,
  isSdxl,
  makesFromText,
  modelName,
  modelTitle,
  sharesWeightsOf,
  shortHash,
  sizesOf,
} from "../a1111/checkpoints.js";
import { A1111Error, httpException, invalid, toA1111Error } from "../a1111/errors.js";
import { addHiresSchedule, latentUpscaleModeList, resolveHires, upscalerList } from "../a1111/hires.js";
import { img2imgRuns, img2imgStrength, prepareImg2img } from "../a1111/img2img.js";
import { infotext } from "../a1111/infotext.js";
import { resolveSampler, SAMPLER_TABLE, schedulersOf } from "../a1111/samplers.js";
import {
  ANY_OBJECT,
  CHECKPOINT,
  doc,
  echoParameters,
  IMG2IMG_BODY,
  IMG2IMG_DEFAULTS,
  type Img2ImgBody,
  list,
  MAX_IMAGES,
  SEED_LIMIT,
  TXT2IMG_BODY,
  TXT2IMG_DEFAULTS,
  TXT2IMG_RESPONSE,
} from "../a1111/schemas.js";
import { urlBaseOf } from "../http/headers.js";
import type { A1111Settings, ModelAdapter } from "../models/model.js";
import { isTerminal, type PredictionRecord } from "../predictions/prediction.js";
import type { PredictionService } from "../predictions/service.js";
import type { JsonSchema } from "../schemas/json-schema.js";

export interface A1111Options {
  service: PredictionService;
  publicBaseUrl: string | undefined;
  /** Accepts Basic (--api-auth) and Bearer; sets req.account. */
  authenticate: (req: FastifyRequest, reply: FastifyReply, done: (err?: Error) => void) => void;
  /** The server's version, reported as A1111 reports its own. */
  version: string;
  /** img2img's body limit: its pictures come as base64 in the JSON, as A1111 takes them. */
  img2imgBodyLimit: number;
}

/**
 * The prompts' `<lora:…>` tags, checked before any prediction is made: a malformed tag or a LoRA
 * the model's lora_dir does not hold is a 422 on its field, not a failed generation.
 */
async function checkPromptTags(
  model: ModelAdapter,
  checkpoint: ModelAdapter,
  prompts: Record<string, string | undefined>,
): Promise<void> {
  const dir = model.promptFolders?.loraDir ?? checkpoint.promptFolders?.loraDir;
  for (const [field, text] of Object.entries(prompts)) {
    if (!text) continue;
    try {
      const { loras, pieces } = parseA1111Prompt(text);
      checkEmphasis(pieces, field);
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

/** The account setting that holds its checkpoint (the served model's owner/name). */
const CHECKPOINT_SETTING = "a1111.sd_model_checkpoint";
const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

function jobTimestamp(d: Date): string {
  return d.toISOString().replace(/[-:T]/g, "").slice(0, 14);
}

export async function a1111Routes(app: FastifyInstance, opts: A1111Options): Promise<void> {
  const { service } = opts;
  // Models that take a picture (img2img, inpainting) are not checkpoints to A1111 clients; SDXL (which takes one too) is.
  const served = service.models.filter((m) => makesFromText(m) || isSdxl(m));
  /** The latest preview of each prediction this node's calls are waiting on (previews are not stored). */
  const previews = new Map<string, { step: number; image: Uint8Array | undefined }>();

  /**
   * The account's checkpoint, read from the store on each request (one key lookup): the model it
   * chose while that model is served; otherwise the default (the first served), with the name
   * remembered, so that the choice comes back if the model does (GET /options says so meanwhile).
   */
  const checkpointOf = async (account: string): Promise<{ model: ModelAdapter | undefined; unserved?: string }> => {
    const chosen = await service.accounts.setting(account, CHECKPOINT_SETTING);
    const model = chosen === undefined ? undefined : findCheckpoint(served, chosen);
    if (model) return { model };
    return { model: served[0], ...(chosen !== undefined ? { unserved: chosen } : {}) };
  };
  const current = async (account: string) => (await checkpointOf(account)).model;
  const remember = (account: string, m: ModelAdapter) =>
    service.accounts.setSetting(account, CHECKPOINT_SETTING, modelName(m));

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

  const optionsOf = async (account: string) => {
    const { model: m, unserved } = await checkpointOf(account);
    return {
      sd_model_checkpoint: m ? modelTitle(m) : null,
      sd_checkpoint_hash: m?.version.id ?? null,
      sd_vae: "Automatic",
      CLIP_stop_at_last_layers: 1,
      samples_format: "png",
      sd_checkpoints_limit: served.length,
      // Not one of A1111's options: why sd_model_checkpoint is not the model the account chose.
      ...(unserved !== undefined && m
        ? {
            sdserve_checkpoint_notice: `The checkpoint chosen, ${unserved}, is not served now; ${modelName(m)} (the default) is used until it is served again or another is chosen.`,
          }
        : {}),
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
      await remember(req.account, m);
    }
    // Every other option sent back (the whole object from GET, as Open WebUI does) is accepted and kept by nobody.
    return null;
  });

  // What some served model can run: its input's schedulers, in A1111's names.
  const offered = SAMPLER_TABLE.filter((r) => served.some((m) => schedulersOf(m).includes(r.replicate)));
  app.get("/samplers", { schema: doc("The samplers served", list(ANY_OBJECT)) }, async () =>
    offered.map((r) => ({
      name: r.sampler,
      aliases: [],
      // As A1111 lists a sampler's own schedule ("Automatic" means it).
      options: r.karras === "default" ? { scheduler: "karras" } : {},
    })),
  );
  app.get("/schedulers", { schema: doc("The schedule types served", list(ANY_OBJECT)) }, async () =>
    ["Automatic", ...(offered.some((r) => r.karras !== "no") ? ["Karras"] : [])].map((label) => ({
      name: label.toLowerCase(),
      label,
      aliases: null,
      default_rho: label === "Karras" ? 7 : -1,
      need_inner_model: false,
    })),
  );
  app.get(
    "/upscalers",
    { schema: doc("The pixel upscalers of the hires fix (Lanczos resizing; no upscaler models)", list(ANY_OBJECT)) },
    async () => upscalerList(),
  );
  app.get(
    "/latent-upscale-modes",
    { schema: doc("The latent upscale modes of the hires fix (all six of A1111's)", list(ANY_OBJECT)) },
    async () => latentUpscaleModeList(),
  );
  app.get("/sd-vae", { schema: doc("VAEs to swap in: none", list(ANY_OBJECT)) }, async () => []);
  app.get(
    "/loras",
    { schema: doc("The LoRA files the account's checkpoint can call (its lora_dir)", list(ANY_OBJECT)) },
    async (req) => {
      const dir = (await current(req.account))?.promptFolders?.loraDir;
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
      const m = await current(req.account);
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

  app.get(
    "/progress",
    { schema: doc("The account's txt2img and img2img calls in flight", ANY_OBJECT) },
    async (req) => {
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
        // ProgressResponse's current_task: the task being run (none when idle).
        current_task: null,
      };
      const mine = await callsInFlight(service.accounts, req.account);
      const call = mine[0];
      if (!call) return idle;
      // Steps as the store's logs have them, or further where this node holds a later preview.
      const jobs = mine.flatMap((c) =>
        c.jobs.map((j) => ({ ...j, step: Math.max(j.step, previews.get(j.id)?.step ?? 0) })),
      );
      const missing = mine.reduce((n, c) => n + c.missing, 0);
      const missingDone = mine.reduce((n, c) => n + (c.missingDone ? c.missing : 0), 0);
      const doneCount = missingDone + jobs.filter((j) => isTerminal(j.status)).length;
      const running =
        jobs.find((j) => j.status === "processing") ?? jobs.find((j) => !isTerminal(j.status) && j.step > 0);
      const waiting = running ?? jobs.find((j) => !isTerminal(j.status));
      const fraction = running && running.steps > 0 ? Math.min(1, running.step / running.steps) : 0;
      const progress = Math.min(1, (doneCount + fraction) / (jobs.length + missing));
      const elapsed = Math.max(0, (Date.now() - call.createdAt) / 1000);
      // The picture of the image being made, where this node is the one waiting on it.
      // ProgressRequest's skip_current_image: a poll that does not want the picture gets none.
      const skip = /^(1|true|yes|on)$/i.test(
        String((req.query as Record<string, unknown>)["skip_current_image"] ?? ""),
      );
      const preview = skip ? undefined : [...jobs].reverse().find((j) => previews.get(j.id)?.image)?.id;
      const image = preview === undefined ? undefined : previews.get(preview)?.image;
      return {
        progress,
        eta_relative: progress > 0 ? Math.max(0, elapsed / progress - elapsed) : 0,
        state: {
          ...idle.state,
          job: waiting ? `prediction ${waiting.id}` : "",
          job_count: jobs.length + missing,
          job_timestamp: call.timestamp,
          job_no: doneCount,
          sampling_step: running?.step ?? 0,
          sampling_steps: waiting?.steps ?? 0,
        },
        current_image: image ? Buffer.from(image).toString("base64") : null,
        textinfo: running ? `Sampling step ${running.step}/${running.steps}` : null,
        current_task: `task(${call.id})`,
      };
    },
  );

  /** Cancels predictions (those finished already are left as they are). */
  const cancelAll = (account: string, ids: readonly string[]) =>
    Promise.all(ids.map((id) => service.cancel(account, id).catch(() => undefined)));
  // Whichever node runs the call: the cancel is stored, and reaches the worker running it through the events.
  const stop = async (account: string, which: "all" | "current") => {
    for (const call of await callsInFlight(service.accounts, account)) {
      const open = call.jobs.filter((j) => !isTerminal(j.status));
      // The image being made: the one processing, else the next to run.
      const current = open.find((j) => j.status === "processing") ?? open[0];
      await cancelAll(account, which === "all" ? open.map((j) => j.id) : current ? [current.id] : []);
    }
    return {};
  };
  app.post("/interrupt", { schema: doc("Stops the account's txt2img and img2img calls", ANY_OBJECT) }, async (req) =>
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
  app.post("/img2img", { schema: img2imgSchema, bodyLimit: opts.img2imgBodyLimit }, (req, reply) =>
    generate(req, reply, "img2img"),
  );

  /** The checkpoint's img2img or inpainting model: on its weights, with the picture inputs. */
  function targetFor(checkpoint: ModelAdapter, kind: "img2img" | "inpainting"): ModelAdapter {
    const needs = kind === "inpainting" ? "mask" : "prompt_strength";
    // SDXL's own input takes the picture (and mask); SD's come as -img2img / -inpainting models.
    const props = inputPropsOf(checkpoint);
    const own = Object.hasOwn(props, "image") && Object.hasOwn(props, needs) ? checkpoint : undefined;
    const target =
      own ??
      service.models.find(
        (m) =>
          (modelName(m) === `${modelName(checkpoint)}-${kind}` || sharesWeightsOf(m) === modelName(checkpoint)) &&
          Object.hasOwn(inputPropsOf(m), needs),
      );
    if (!target) throw httpException(404, `${kind} is not served for ${modelName(checkpoint)}`);
    return target;
  }

  async function generate(req: FastifyRequest, reply: FastifyReply, mode: "txt2img" | "img2img") {
    // The schema (TXT2IMG_BODY, IMG2IMG_BODY) has checked every type and range; A1111's defaults fill the rest.
    const body = (req.body ?? {}) as Img2ImgBody;
    const prompt = body.prompt ?? "";
    const negative = body.negative_prompt ?? "";
    const steps = body.steps ?? TXT2IMG_DEFAULTS.steps;
    const cfg = body.cfg_scale ?? TXT2IMG_DEFAULTS.cfg_scale;
    let width = body.width ?? TXT2IMG_DEFAULTS.width;
    let height = body.height ?? TXT2IMG_DEFAULTS.height;
    const batchSize = body.batch_size ?? 1;
    const nIter = body.n_iter ?? 1;
    if (batchSize * nIter > MAX_IMAGES) {
      throw invalid("batch_size", `batch_size × n_iter is at most ${MAX_IMAGES} here`);
    }
    const seedIn = body.seed ?? -1;
    const sendImages = body.send_images ?? true;
    const { sampler, schedule, replicate, karras } = resolveSampler(
      // Python's `or`, as A1111 reads them: an empty sampler_name falls back to sampler_index.
      body.sampler_name || body.sampler_index || null,
      body.scheduler ?? null,
    );

    const overrides = body.override_settings ?? {};
    let model: ModelAdapter | undefined;
    const ckpt = overrides.sd_model_checkpoint;
    if (ckpt !== undefined) {
      model = findCheckpoint(served, ckpt);
      if (!model) throw httpException(404, `model ${JSON.stringify(ckpt)} not found`);
      if (body.override_settings_restore_afterwards === false) await remember(req.account, model);
    } else {
      model = await current(req.account);
    }
    if (!model) throw httpException(503, "No model is served.");
    const vae = overrides.sd_vae;
    if (vae !== undefined && !["Automatic", "None", ""].includes(vae)) {
      throw httpException(404, `VAE ${JSON.stringify(vae)} not found`);
    }
    const clipSkip = overrides.CLIP_stop_at_last_layers ?? body.clip_skip ?? 1;
    if (!schedulersOf(model).includes(replicate)) {
      const names = SAMPLER_TABLE.filter((r) => schedulersOf(model as ModelAdapter).includes(r.replicate)).map(
        (r) => r.sampler,
      );
      throw invalid(
        "sampler_name",
        `${sampler} is not available for ${modelName(model)}; available: ${names.join(", ")}`,
      );
    }
    const checkpoint = model;
    const sdxl = isSdxl(model);
    // The hires fix: its first pass at width × height (or firstphase_*), its second as A1111 runs it.
    const hires =
      mode === "txt2img"
        ? resolveHires(body, { width, height, steps, prompt, negative, sampler }, model.imageLimits.maxPixels)
        : undefined;
    let hrScheduler: { scheduler: string; useKarrasSigmas: boolean } | undefined;
    if (hires) {
      // A1111 can switch checkpoints for the second pass; here it runs on the first pass's.
      const hrCheckpoint = body.hr_checkpoint_name;
      if (hrCheckpoint && hrCheckpoint !== "Use same checkpoint" && findCheckpoint(served, hrCheckpoint) !== model) {
        throw invalid("hr_checkpoint_name", "the hires fix's second pass runs on the first pass's checkpoint here");
      }
      width = hires.width;
      height = hires.height;
      // Empty means the first pass's too (A1111: hr_sampler_name or sampler_name).
      const same = (v: string | undefined, word: string) => (!v || v === `Use same ${word}` ? null : v);
      const hr = resolveSampler(
        same(body.hr_sampler_name, "sampler") ?? sampler,
        same(body.hr_scheduler, "scheduler") ?? schedule,
        "hr_sampler_name",
      );
      if (!schedulersOf(model).includes(hr.replicate)) {
        throw invalid(
          "hr_sampler_name",
          `${hr.sampler} with schedule type ${hr.schedule} is not available for ${modelName(model)}`,
        );
      }
      hrScheduler = { scheduler: hr.replicate, useKarrasSigmas: hr.karras };
      addHiresSchedule(hires.extra, schedule, hr.schedule);
    }
    // A1111 ignores clip skip for SDXL (its encoders are read at the penultimate layer already).
    const clipApplied = sdxl ? 1 : clipSkip;
    const settings: A1111Settings = {
      ...(clipApplied !== 1 ? { clipSkip: clipApplied } : {}),
      ...(karras ? { karras } : {}),
      ...(hires ? { hires: { ...hires.fix, ...hrScheduler } } : {}),
    };
    if (mode === "img2img") {
      if (!Array.isArray(body.init_images) || body.init_images.length === 0) {
        throw invalid("init_images", "ensure this value has at least 1 items", "value_error.list.min_items");
      }
      model = targetFor(checkpoint, body.mask !== undefined ? "inpainting" : "img2img");
    }
    const sizes = sizesOf(model);
    const sized = Object.hasOwn(inputPropsOf(model), "width");
    for (const [key, v] of [
      ["width", width],
      ["height", height],
    ] as const) {
      if (sized && sizes.length > 0 && !sizes.includes(v)) {
        throw invalid(key, `${key} must be one of ${sizes.join(", ")}`, "value_error.const");
      }
    }
    // A model sized by its picture (img2img) is bounded by the checkpoint's pixel limit instead.
    const maxPixels = checkpoint.imageLimits.maxPixels;
    if (!sized && width * height > maxPixels) {
      throw invalid("width", `width × height is at most ${maxPixels} pixels here, got ${width}x${height}`);
    }
    // The pictures, prepared as A1111 prepares them (resize_mode, mask blur, inpaint_full_res, fill).
    const picture = mode === "img2img" ? await prepareImg2img(body, width, height, maxPixels) : undefined;
    // A mask with nothing to repaint under inpaint_full_res: A1111 switches to img2img (no mask).
    if (picture && body.mask !== undefined && !picture.mask) model = targetFor(checkpoint, "img2img");

    await checkPromptTags(model, checkpoint, { prompt, negative_prompt: negative });
    if (hires) {
      await checkPromptTags(model, checkpoint, {
        hr_prompt: hires.fix.prompt ?? prompt,
        hr_negative_prompt: hires.fix.negativePrompt ?? negative,
      });
    }

    const seed = seedIn === -1 ? randomInt(0, SEED_LIMIT) : seedIn;
    const count = batchSize * nIter;
    // A1111's all_seeds: seed + i, never wrapped (its seeds are not bounded by the random draw's range).
    const seeds = Array.from({ length: count }, (_, i) => seed + i);
    // Its subseeds likewise, from their own draw: reported only (subseed_strength 0 makes no variation).
    const subseedIn = body.subseed ?? -1;
    const subseed = subseedIn === -1 ? randomInt(0, SEED_LIMIT) : subseedIn;
    const inputProps = (model.schemas["Input"] as JsonSchema | undefined)?.properties ?? {};
    const denoising = body.denoising_strength ?? IMG2IMG_DEFAULTS.denoising_strength;
    if (picture) {
      settings.strength = img2imgStrength(steps, denoising);
      if (picture.latentResize) settings.latentResize = { width, height };
      const fill = body.inpainting_fill;
      if (picture.mask && (fill === 2 || fill === 3)) settings.maskedContent = fill === 2 ? "noise" : "zeros";
    }
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
      // A1111 marks no picture; SDXL's Replicate input watermarks by default.
      ...(Object.hasOwn(inputProps, "apply_watermark") ? { apply_watermark: false } : {}),
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
    // What runs per image: both hires passes; img2img's share of the schedule (A1111's, SDXL too).
    const runSteps = picture ? img2imgRuns(steps, denoising) : steps + (hires?.fix.steps ?? 0);
    // Each prediction carries its call, so that any node finds the call in the store (/progress, /interrupt).
    const call = { id: randomUUID(), timestamp: jobTimestamp(started), images: seeds.length, steps: runSteps };
    const made: string[] = [];
    const unsubscribe: (() => void)[] = [];
    // Nobody will read the result once the client hangs up: stop this call's work (not the account's other calls).
    const onClose = () => {
      if (!reply.raw.writableFinished) void cancelAll(req.account, made);
    };
    reply.raw.on("close", onClose);
    let finished: (PredictionRecord | undefined)[];
    try {
      for (const s of seeds) {
        // A refusal part-way (the queue or the token's cap is full) takes back what this call made.
        const created = await service
          .create(
            req.account,
            {
              body: { input: inputOf(s) },
              model,
              promptSyntax: "a1111" as const,
              a1111: { ...settings, call },
            },
            base,
          )
          .catch(async (err: unknown) => {
            await cancelAll(req.account, made);
            throw err;
          });
        made.push(created.id);
        unsubscribe.push(
          service.events.subscribePreviews(created.id, (p) => {
            previews.set(created.id, { step: p.step, image: p.images[0] });
          }),
        );
      }
      finished = [];
      for (const id of made) finished.push(await service.waitForCompletion(id, Number.POSITIVE_INFINITY));
    } finally {
      reply.raw.off("close", onClose);
      for (const u of unsubscribe) u();
      for (const id of made) previews.delete(id);
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
    // What A1111 reports as the model: the checkpoint, where the img2img or inpainting model runs on its weights.
    const reported = model !== checkpoint && sharesWeightsOf(model) === modelName(checkpoint) ? checkpoint : model;
    // extra_generation_params as A1111 (1.10) fills them: its denoising strength first, then the
    // hires fix's, or the inpainting's (processing.py, StableDiffusionProcessingImg2Img.init).
    const extra: [string, string | number][] = [
      ...(picture?.extra ?? []),
      // inpainting_fill 2 and 3: the area to repaint starts from other latents.
      ...(picture?.mask && settings.maskedContent
        ? [
            ["Masked content", settings.maskedContent === "noise" ? "latent noise" : "latent nothing"] as [
              string,
              string,
            ],
          ]
        : []),
      ...(hires?.extra ?? []),
    ];
    const infoDenoising = picture ? denoising : hires?.fix.denoisingStrength;
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
        model: reported,
        version: opts.version,
        denoising: infoDenoising,
        clipSkip: clipApplied,
        extra,
      });
    // Interrupted or skipped images are left out, as A1111 returns what was made.
    const images: string[] = [];
    const kept: number[] = [];
    for (const [i, p] of finished.entries()) {
      if (p?.status !== "succeeded") continue;
      kept.push(i);
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
      const bytes = await file.read();
      // The PNG's "parameters" are the infotext, as A1111 writes each image's; img2img with a mask:
      // the original laid back over what the mask keeps (and a crop pasted back), as A1111 answers.
      const png = picture?.finish
        ? await picture.finish(bytes, text(seeds[i] as number))
        : withPngText(bytes, "parameters", text(seeds[i] as number));
      images.push(Buffer.from(png).toString("base64"));
    }
    const shown = kept.length > 0 ? kept : seeds.map((_, i) => i);
    const infoSeeds = shown.map((i) => seeds[i] as number);
    const infoSubseeds = shown.map((i) => subseed + i);
    const info = {
      prompt,
      all_prompts: infoSeeds.map(() => prompt),
      negative_prompt: negative,
      all_negative_prompts: infoSeeds.map(() => negative),
      seed: infoSeeds[0],
      all_seeds: infoSeeds,
      subseed: infoSubseeds[0],
      all_subseeds: infoSubseeds,
      subseed_strength: 0,
      width,
      height,
      sampler_name: sampler,
      cfg_scale: cfg,
      steps,
      batch_size: batchSize,
      restore_faces: false,
      face_restoration_model: null,
      sd_model_name: modelName(reported),
      sd_model_hash: shortHash(reported),
      sd_vae_name: null,
      sd_vae_hash: null,
      seed_resize_from_w: -1,
      seed_resize_from_h: -1,
      denoising_strength: picture ? denoising : hires ? hires.fix.denoisingStrength : (body.denoising_strength ?? null),
      extra_generation_params: Object.fromEntries([
        ...(infoDenoising === undefined ? [] : [["Denoising strength", infoDenoising]]),
        ...extra,
      ]),
      index_of_first_image: 0,
      infotexts: infoSeeds.map(text),
      styles: body.styles ?? [],
      job_timestamp: call.timestamp,
      // What was used: SDXL's encoders have no clip skip here (as in A1111, where it is ignored for SDXL).
      clip_skip: clipApplied,
      is_using_inpainting_conditioning: false,
      version: `sdserve ${opts.version}`,
    };
    const parameters = echoParameters(
      mode === "img2img" ? IMG2IMG_BODY : TXT2IMG_BODY,
      body as Record<string, unknown>,
    );
    return { images, parameters, info: JSON.stringify(info) };
  }
}
