/**
 * GET /metrics in Prometheus's text format: predictions by status, predict_time and step time
 * histograms, queue depth and unfinished predictions, webhook failures, process metrics.
 */
import assert from "node:assert/strict";
import net from "node:net";
import { after, before, test } from "node:test";
import {
  api,
  authHeaders,
  eventually,
  metricSample,
  type Sdserve,
  smallInput,
  startSdserve,
  VERSION,
} from "./server.js";

let server: Sdserve;

before(async () => {
  server = await startSdserve({ env: { SDSERVE_WEBHOOK_ALLOW_PRIVATE: "true" } });
});
after(async () => {
  await server?.stop();
});

/** A loopback port with nothing listening: every webhook to it fails. */
async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, "127.0.0.1", resolve));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((resolve) => s.close(resolve));
  return port;
}

test("/metrics counts predictions, times steps and predictions, and counts failed webhooks", async () => {
  const port = await closedPort();
  const r = await api(
    server,
    "POST",
    "/v1/predictions",
    {
      version: VERSION,
      input: smallInput({ num_inference_steps: 3 }),
      webhook: `http://127.0.0.1:${port}/nobody`,
      webhook_events_filter: ["completed"],
    },
    { ...authHeaders(), Prefer: "wait=60" },
  );
  assert.equal(r.json["status"], "succeeded");
  const text = await eventually(async () => {
    const res = await fetch(`${server.url}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /^text\/plain/);
    const body = await res.text();
    return (metricSample(body, "sdserve_webhook_failures_total", 'event="completed"') ?? 0) >= 1 ? body : undefined;
  }, "a failed webhook attempt in /metrics");
  assert.equal(metricSample(text, "sdserve_predictions_total", 'status="starting"'), 1);
  assert.equal(metricSample(text, "sdserve_predictions_total", 'status="processing"'), 1);
  assert.equal(metricSample(text, "sdserve_predictions_total", 'status="succeeded"'), 1);
  assert.equal(metricSample(text, "sdserve_predict_time_seconds_count"), 1);
  assert.equal(metricSample(text, "sdserve_step_seconds_count"), 3);
  assert.equal(metricSample(text, "sdserve_queue_depth"), 0);
  assert.equal(metricSample(text, "sdserve_predictions_unfinished"), 0);
  assert.match(text, /^# TYPE sdserve_predict_time_seconds histogram$/m);
  assert.match(text, /^sdserve_process_cpu_seconds_total\{role="all"\} /m);
});
