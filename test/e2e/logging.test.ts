/**
 * The operator's log of a real `sdserve serve`: JSON lines (stdout is not a terminal) with a
 * record per request and per prediction change, and no secret in any of them: API tokens,
 * the webhook signing secret, webhook URLs, and the capability keys of output files, streams
 * and prediction pages.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import {
  api,
  authHeaders,
  eventually,
  readSse,
  type Sdserve,
  smallInput,
  startSdserve,
  TOKEN,
  VERSION,
} from "./server.js";

let server: Sdserve;
before(async () => {
  server = await startSdserve({ env: { SDSERVE_WEBHOOK_ALLOW_PRIVATE: "true", LOG_LEVEL: "debug" } });
});
after(() => server.stop());

type LogRecord = Record<string, unknown> & { level: number; msg: string; time: string };

function records(output: string): LogRecord[] {
  const lines = output.split("\n").filter((l) => l.trim() !== "");
  return lines.map((line) => {
    try {
      return JSON.parse(line) as LogRecord;
    } catch {
      throw new Error(`a log line that is not JSON: ${line}`);
    }
  });
}

test("requests and the prediction lifecycle are JSON records with their fields; no secret is ever logged", async () => {
  const hook = "http://127.0.0.1:9/hook?signature=hook-url-secret";
  const created = await api(server, "POST", "/v1/predictions", {
    version: VERSION,
    input: smallInput({ num_inference_steps: 3 }),
    webhook: hook,
  });
  assert.equal(created.status, 201);
  const id = created.json["id"] as string;
  const urls = created.json["urls"] as Record<string, string>;
  await readSse(urls["stream"] as string);
  const done = await eventually(async () => {
    const p = (await api(server, "GET", `/v1/predictions/${id}`)).json;
    return p["status"] === "succeeded" ? p : undefined;
  }, "the prediction to succeed");
  const [file] = done["output"] as string[];
  assert.equal((await fetch(file as string)).status, 200);
  assert.equal((await fetch(urls["web"] as string)).status, 200);
  const secret = (await api(server, "GET", "/v1/webhooks/default/secret")).json["key"] as string;
  assert.ok(secret);
  const failed = await api(server, "GET", "/v1/predictions/nope", undefined, authHeaders("r8_wrong_token"));
  assert.equal(failed.status, 401);

  const log = await eventually(async () => {
    const all = records(server.output());
    return all.some((r) => r.msg === "prediction succeeded" && r["prediction_id"] === id) &&
      all.some((r) => r.msg === "request" && r["status"] === 401)
      ? all
      : undefined;
  }, "the succeeded record and that of the last request");

  for (const r of log) {
    assert.equal(typeof r.level, "number");
    assert.ok(!Number.isNaN(Date.parse(r.time)), `an ISO time: ${r.time}`);
  }
  const get = log.find(
    (r) => r.msg === "request" && r["route"] === "/v1/predictions/:prediction_id" && r["method"] === "GET",
  );
  assert.ok(get, "a request record for GET /v1/predictions/:prediction_id");
  assert.match(String(get["reqId"]), /\S/);
  assert.equal(get["status"], 200);
  assert.equal(typeof get["ms"], "number");
  assert.equal(get["url"], `/v1/predictions/${id}`);
  assert.ok(log.some((r) => r.msg === "request" && r["status"] === 401));
  const fileRequest = log.find((r) => r.msg === "request" && String(r["route"]).endsWith("/files/:files_key/:name"));
  assert.ok(fileRequest, "a request record for the output file");
  assert.match(String(fileRequest["url"]), /\/files\/…\/out-0\.png$/);

  const lifecycle = log.filter((r) => r["prediction_id"] === id);
  const byMsg = (msg: string) => lifecycle.find((r) => r.msg === msg);
  assert.equal(byMsg("prediction created")?.["model"], "stability-ai/stable-diffusion");
  assert.equal(byMsg("prediction started")?.["attempt"], 1);
  assert.equal(typeof byMsg("prediction started")?.["queue_time_s"], "number");
  const succeeded = byMsg("prediction succeeded");
  assert.equal(succeeded?.["status"], "succeeded");
  assert.equal(succeeded?.["outputs"], 1);
  assert.equal(typeof succeeded?.["predict_time_s"], "number");
  assert.equal(typeof succeeded?.["total_time_s"], "number");
  assert.deepEqual(
    lifecycle
      .filter((r) => r.msg === "prediction progress")
      .map((r) => [r["step"], r["total"]])
      .at(-1),
    [3, 3],
    "the last step is always a progress record",
  );
  assert.ok(log.some((r) => r.msg === "Model ready: stability-ai/stable-diffusion" || /^Model ready/.test(r.msg)));

  const text = server.output();
  const keys = [
    new URL(file as string).pathname.split("/").at(-2),
    new URL(urls["stream"] as string).pathname.split("/").at(-1),
    new URL(urls["web"] as string).pathname.split("/").at(-1),
  ];
  for (const [what, value] of [
    ["the API token", TOKEN],
    ["a wrong token sent", "r8_wrong_token"],
    ["the webhook signing secret", secret],
    ["the webhook URL", "hook-url-secret"],
    ...keys.map((k) => ["a capability key", k as string]),
  ] as const) {
    assert.ok(value && value.length >= 8, `${what} is a real value`);
    assert.ok(!text.includes(value), `${what} appears in the log`);
  }
});

test("a token made on first start is saved, and not written to a log that is not a terminal", async () => {
  const fresh = await startSdserve({ env: { SDSERVE_API_TOKENS: "" } });
  try {
    const token = readFileSync(path.join(fresh.dataDir, "api-token"), "utf8").trim();
    assert.match(token, /^r8_/);
    const made = records(fresh.output()).find((r) => /created an API token/.test(r.msg));
    assert.equal(made?.["file"], path.join(fresh.dataDir, "api-token"));
    assert.ok(!fresh.output().includes(token));
  } finally {
    await fresh.stop();
  }
});
