/**
 * OpenAI's Images API through the real openai client: URLs and base64 PNGs of the requested
 * size, the prediction behind it, and errors in OpenAI's envelope.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { decode } from "fast-png";
import OpenAI from "openai";
import type { ImageGenerateParamsNonStreaming } from "openai/resources/images";
import { api, type Sdserve, startSdserve, TOKEN } from "./server.js";

let server: Sdserve;
let openai: OpenAI;

before(async () => {
  server = await startSdserve();
  openai = new OpenAI({ apiKey: TOKEN, baseURL: `${server.url}/v1`, maxRetries: 0 });
});
after(async () => {
  await server?.stop();
});

/** OpenAI's fields plus the model's own, which the server also accepts (few steps keep tests fast). */
function params(extra: Record<string, unknown>): ImageGenerateParamsNonStreaming {
  return { prompt: "a lighthouse at dusk", num_inference_steps: 2, ...extra } as ImageGenerateParamsNonStreaming;
}

test("images.generate with response_format url: absolute PNG URLs of the requested size", async () => {
  const res = await openai.images.generate(
    params({ model: "dall-e-2", n: 2, size: "256x128", quality: "hd", user: "u1" }),
  );
  assert.equal(typeof res.created, "number");
  assert.ok(Math.abs(res.created - Date.now() / 1000) < 3600);
  assert.equal(res.data?.length, 2);
  for (const item of res.data ?? []) {
    assert.ok(item.url?.startsWith(`${server.url}/files/`));
    const file = await fetch(item.url as string);
    assert.equal(file.headers.get("content-type"), "image/png");
    const png = decode(new Uint8Array(await file.arrayBuffer()));
    assert.deepEqual([png.width, png.height], [256, 128]);
  }
  // It was a prediction like any other.
  const list = await api(server, "GET", "/v1/predictions?page_size=1");
  const p = (list.json["results"] as Record<string, unknown>[])[0] as Record<string, unknown>;
  assert.equal(p["status"], "succeeded");
  assert.deepEqual(p["input"], {
    prompt: "a lighthouse at dusk",
    width: 256,
    height: 128,
    num_outputs: 2,
    num_inference_steps: 2,
  });
});

test("images.generate with response_format b64_json: the PNG inline", async () => {
  const res = await openai.images.generate(params({ size: "128x128", response_format: "b64_json", seed: 4 }));
  assert.equal(res.data?.length, 1);
  const bytes = Buffer.from(res.data?.[0]?.b64_json as string, "base64");
  const png = decode(new Uint8Array(bytes));
  assert.deepEqual([png.width, png.height], [128, 128]);
  assert.match(String(png.text["parameters"]), /Seed: 4/);
});

test("bad parameters and a bad key are errors in OpenAI's envelope", async () => {
  const cases: [Record<string, unknown>, string | null][] = [
    [{ size: "1024x1024" }, "size"],
    [{ size: "100x100" }, "size"],
    [{ size: "large" }, "size"],
    [{ n: 5, size: "128x128" }, "n"],
    [{ response_format: "png", size: "128x128" }, "response_format"],
    [{ prompt: "", size: "128x128" }, "prompt"],
    [{ size: "128x128", num_inference_steps: 0 }, "num_inference_steps"],
  ];
  for (const [extra, param] of cases) {
    await assert.rejects(openai.images.generate(params(extra)), (err: InstanceType<typeof OpenAI.APIError>) => {
      assert.equal(err.status, 400, JSON.stringify(extra));
      assert.equal((err.error as { param?: string }).param, param);
      assert.equal((err.error as { type?: string }).type, "invalid_request_error");
      return true;
    });
  }
  const bad = new OpenAI({ apiKey: "sk-wrong", baseURL: `${server.url}/v1`, maxRetries: 0 });
  await assert.rejects(
    bad.images.generate(params({ size: "128x128" })),
    (err: InstanceType<typeof OpenAI.APIError>) => {
      assert.equal(err.status, 401);
      assert.equal((err.error as { code?: string }).code, "invalid_api_key");
      return true;
    },
  );
});

test("models.list: one body for both clients, OpenAI's {object, data} beside Replicate's results", async () => {
  const ids: string[] = [];
  for await (const m of openai.models.list()) {
    assert.equal(m.object, "model");
    assert.equal(typeof m.created, "number");
    assert.ok(m.created > 1_600_000_000);
    assert.equal(m.owned_by, "stability-ai");
    ids.push(m.id);
  }
  assert.equal(ids[0], "stability-ai/stable-diffusion");
  // The same models, in the same order, as Replicate's clients see them.
  const raw = await api(server, "GET", "/v1/models");
  assert.deepEqual(
    (raw.json["results"] as Record<string, unknown>[]).map((m) => `${m["owner"]}/${m["name"]}`),
    ids,
  );
});

test("models.retrieve: the openai package (slash encoded) and a client that sends the id as is get OpenAI's model", async () => {
  const model = await openai.models.retrieve("stability-ai/stable-diffusion");
  assert.equal(model.id, "stability-ai/stable-diffusion");
  assert.equal(model.object, "model");
  assert.equal(model.owned_by, "stability-ai");
  assert.ok(model.created > 1_600_000_000);
  // openai-python sends /models/stability-ai/stable-diffusion: Replicate's model, with OpenAI's fields too.
  const raw = await api(server, "GET", "/v1/models/stability-ai/stable-diffusion");
  assert.equal(raw.status, 200);
  assert.deepEqual(
    [raw.json["id"], raw.json["object"], raw.json["created"], raw.json["owned_by"], raw.json["name"]],
    [model.id, "model", model.created, "stability-ai", "stable-diffusion"],
  );
  await assert.rejects(openai.models.retrieve("no/such-model"), (err: unknown) => {
    assert.ok(err instanceof OpenAI.NotFoundError, String(err));
    assert.equal((err.error as { code?: string }).code, "model_not_found");
    return true;
  });
});

test("model: a served model's name, or OpenAI's names meaning the first; gpt-image models answer base64", async () => {
  for (const model of ["stability-ai/stable-diffusion", "dall-e-3"]) {
    const res = await openai.images.generate(params({ model, size: "128x128" }));
    assert.ok(res.data?.[0]?.url, model);
  }
  const gpt = await openai.images.generate(
    params({ model: "gpt-image-1", size: "128x128", quality: "low", background: "opaque", user: "u", style: "vivid" }),
  );
  assert.equal(gpt.data?.[0]?.url, undefined);
  const png = decode(new Uint8Array(Buffer.from(gpt.data?.[0]?.b64_json as string, "base64")));
  assert.deepEqual([png.width, png.height], [128, 128]);
  // What GPT image models' answers say beside the images (dall-e's answers do not).
  assert.deepEqual([gpt.background, gpt.output_format, gpt.size], ["opaque", "png", "128x128"]);
  const dalle = await openai.images.generate(params({ model: "dall-e-2", size: "128x128" }));
  assert.deepEqual(Object.keys(dalle).sort(), ["created", "data"]);
});

test("output_format jpeg and webp with output_compression: re-encoded, smaller at lower settings", async () => {
  const sized: Record<string, number> = {};
  for (const [format, compression, magic] of [
    ["jpeg", 95, "ffd8ff"],
    ["jpeg", 10, "ffd8ff"],
    ["webp", 50, "52494646"],
  ] as const) {
    const res = await openai.images.generate(
      params({
        model: "gpt-image-1",
        size: "256x256",
        seed: 5,
        output_format: format,
        output_compression: compression,
      }),
    );
    const bytes = Buffer.from(res.data?.[0]?.b64_json as string, "base64");
    assert.equal(bytes.subarray(0, magic.length / 2).toString("hex"), magic, format);
    sized[`${format}${compression}`] = bytes.length;
  }
  assert.ok((sized["jpeg10"] as number) < (sized["jpeg95"] as number), JSON.stringify(sized));
});

test("without model, a GPT-image-only field makes it a GPT image request, answered in base64 as OpenAI's default", async () => {
  // OpenAI: "Defaults to dall-e-2 unless a parameter specific to the GPT image models is used."
  for (const [extra, magic] of [
    [{ output_format: "jpeg" }, "ffd8ff"],
    [{ output_compression: 80, output_format: "webp" }, "52494646"],
    [{ quality: "low" }, "89504e47"],
    [{ background: "opaque" }, "89504e47"],
    [{ moderation: "low" }, "89504e47"],
  ] as const) {
    const res = await openai.images.generate(params({ size: "128x128", ...extra }));
    assert.equal(res.data?.[0]?.url, undefined, JSON.stringify(extra));
    const bytes = Buffer.from(res.data?.[0]?.b64_json as string, "base64");
    assert.equal(bytes.subarray(0, magic.length / 2).toString("hex"), magic, JSON.stringify(extra));
  }
  // dall-e-2's fields and quality levels keep the dall-e-2 default, a URL.
  for (const extra of [{ quality: "standard" }, { style: "vivid" }, {}]) {
    const res = await openai.images.generate(params({ size: "128x128", ...extra }));
    assert.ok(res.data?.[0]?.url, JSON.stringify(extra));
  }
});

test("OpenAI's other fields: bad values and what cannot be honoured are 400s naming the parameter", async () => {
  const cases: [Record<string, unknown>, string, number, string | null][] = [
    [{ model: "no/such-model" }, "model", 404, "model_not_found"],
    [{ model: 7 }, "model", 400, null],
    [{ quality: "ultra" }, "quality", 400, null],
    [{ style: "moody" }, "style", 400, null],
    [{ background: "transparent", response_format: "b64_json" }, "background", 400, null],
    [{ output_format: "gif", response_format: "b64_json" }, "output_format", 400, null],
    [{ output_format: "jpeg", model: "dall-e-2" }, "output_format", 400, null],
    [{ output_format: "jpeg", response_format: "url" }, "output_format", 400, null],
    [{ moderation: "none" }, "moderation", 400, null],
    [{ output_format: "jpeg", response_format: "b64_json", output_compression: 101 }, "output_compression", 400, null],
    [{ user: 12 }, "user", 400, null],
  ];
  for (const [extra, param, status, code] of cases) {
    await assert.rejects(
      openai.images.generate(params({ size: "128x128", ...extra })),
      (err: InstanceType<typeof OpenAI.APIError>) => {
        assert.equal(err.status, status, JSON.stringify(extra));
        const e = err.error as { param?: string; type?: string; code?: string | null; message?: string };
        assert.equal(e.param, param);
        assert.equal(e.type, "invalid_request_error");
        assert.equal(e.code, code);
        assert.equal(typeof e.message, "string");
        return true;
      },
    );
  }
});

test("Open WebUI's OpenAI engine: its request body as sent, each data item read as url or b64_json", async () => {
  // routers/images.py: model (dall-e-2 when unset), prompt, n, size, and response_format b64_json
  // except for gpt-image-1; an error is read from error.message.
  for (const model of ["dall-e-2", "gpt-image-1", "stability-ai/stable-diffusion"]) {
    const body = {
      model,
      prompt: "a lighthouse at dusk",
      n: 1,
      size: "128x128",
      ...(model.includes("gpt-image-1") ? {} : { response_format: "b64_json" }),
    };
    const res = await api(server, "POST", "/v1/images/generations", body);
    assert.equal(res.status, 200, JSON.stringify(res.json));
    for (const image of res.json["data"] as Record<string, string>[]) {
      const bytes = image["url"]
        ? new Uint8Array(await (await fetch(image["url"])).arrayBuffer())
        : new Uint8Array(Buffer.from(image["b64_json"] as string, "base64"));
      assert.deepEqual([decode(bytes).width, decode(bytes).height], [128, 128]);
    }
  }
  const bad = await api(server, "POST", "/v1/images/generations", { model: "dall-e-2", prompt: "x", size: "9x9" });
  assert.equal(bad.status, 400);
  assert.equal(typeof (bad.json["error"] as Record<string, unknown>)["message"], "string");
});

test("stream: true answers server-sent events as the openai client reads them: partial images, then each image", async () => {
  // 200 steps at 256x128 run for a few seconds on the tiny model: step previews at two a second.
  const stream = await openai.images.generate({
    prompt: "a lighthouse at dusk",
    size: "256x128",
    n: 2,
    stream: true,
    partial_images: 2,
    num_inference_steps: 200,
    seed: 3,
  } as OpenAI.Images.ImageGenerateParamsStreaming);
  const events: OpenAI.Images.ImageGenStreamEvent[] = [];
  for await (const event of stream) events.push(event);
  const partial = events.filter((e) => e.type === "image_generation.partial_image");
  const completed = events.filter((e) => e.type === "image_generation.completed");
  assert.deepEqual(
    partial.map((e) => e.partial_image_index),
    [0, 1],
  );
  assert.equal(completed.length, 2);
  assert.deepEqual(
    events.map((e) => e.type),
    [...partial.map((e) => e.type), ...completed.map((e) => e.type)],
  );
  for (const e of events) {
    assert.equal(e.size, "256x128");
    assert.equal(e.output_format, "png");
    assert.equal(e.background, "opaque");
    assert.equal(e.quality, "auto");
    assert.ok(Math.abs(e.created_at - Date.now() / 1000) < 3600);
    const png = decode(new Uint8Array(Buffer.from(e.b64_json, "base64")));
    assert.ok(png.width > 0);
    if (e.type === "image_generation.completed") assert.deepEqual([png.width, png.height], [256, 128]);
  }
  // partial_images 0 (OpenAI's default): the images alone, in the asked format.
  const plain = await openai.images.generate({
    prompt: "a lighthouse at dusk",
    size: "128x128",
    stream: true,
    output_format: "jpeg",
    quality: "low",
    num_inference_steps: 2,
  } as OpenAI.Images.ImageGenerateParamsStreaming);
  const only: OpenAI.Images.ImageGenStreamEvent[] = [];
  for await (const event of plain) only.push(event);
  assert.deepEqual(
    only.map((e) => [e.type, e.output_format, e.quality]),
    [["image_generation.completed", "jpeg", "low"]],
  );
  assert.equal(
    Buffer.from(only[0]?.b64_json as string, "base64")
      .subarray(0, 3)
      .toString("hex"),
    "ffd8ff",
  );
});

test("stream: a bad request is a plain 400; a prediction stopped mid-stream is an error event the client throws", async () => {
  await assert.rejects(
    openai.images.generate({
      prompt: "x",
      size: "100x100",
      stream: true,
    } as OpenAI.Images.ImageGenerateParamsStreaming),
    (err: InstanceType<typeof OpenAI.APIError>) =>
      err.status === 400 && (err.error as { param?: string }).param === "size",
  );
  for (const bad of [{ partial_images: 4 }, { stream: "yes" }]) {
    const res = await api(server, "POST", "/v1/images/generations", { prompt: "x", size: "128x128", ...bad });
    assert.equal(res.status, 400, JSON.stringify(bad));
    assert.equal((res.json["error"] as Record<string, unknown>)["param"], Object.keys(bad)[0]);
  }
  const stream = await openai.images.generate({
    prompt: "a slow one",
    size: "512x512",
    stream: true,
    num_inference_steps: 500,
  } as OpenAI.Images.ImageGenerateParamsStreaming);
  // The error it ends with, caught from the start (it comes while the cancel is being answered).
  const ended = (async () => {
    for await (const _ of stream) {
      // no event comes before the cancel
    }
  })().then(
    () => undefined,
    (err: unknown) => err,
  );
  const id = await (async () => {
    for (;;) {
      const list = await api(server, "GET", "/v1/predictions?page_size=1");
      const p = (list.json["results"] as Record<string, unknown>[])[0];
      if (p && p["status"] === "processing" && (p["input"] as Record<string, unknown>)["prompt"] === "a slow one") {
        return p["id"] as string;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  await api(server, "POST", `/v1/predictions/${id}/cancel`);
  const err = await ended;
  assert.ok(err instanceof OpenAI.APIError, String(err));
  assert.match(err.message, /interrupted/);
});

test("a throttled request is OpenAI's 429: code rate_limit_exceeded, with Retry-After", async () => {
  const limited = await startSdserve({ env: { SDSERVE_RATE_LIMIT: "1/m" } });
  try {
    const client = new OpenAI({ apiKey: TOKEN, baseURL: `${limited.url}/v1`, maxRetries: 0 });
    await client.images.generate(params({ size: "128x128" }));
    await assert.rejects(client.images.generate(params({ size: "128x128" })), (err: unknown) => {
      assert.ok(err instanceof OpenAI.RateLimitError, String(err));
      const e = err.error as { type?: string; code?: string };
      assert.deepEqual([e.type, e.code], ["requests", "rate_limit_exceeded"]);
      assert.ok(Number(err.headers?.get("retry-after")) > 0);
      return true;
    });
  } finally {
    await limited.stop();
  }
});
