/**
 * The predictions API at the HTTP level, against a real sdserve: problem+json errors, auth and
 * per-token isolation, Prefer: wait, pagination, output files, limits, retention, Cancel-After.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import {
  api,
  authHeaders,
  eventually,
  MODEL,
  OTHER_TOKEN,
  type Sdserve,
  SERVED_VERSION,
  slowInput,
  smallInput,
  startSdserve,
  TOKEN,
  VERSION,
} from "./server.js";

let server: Sdserve;

before(async () => {
  // The tests reach it through loopback, standing in for a reverse proxy on the same machine.
  server = await startSdserve({ env: { SDSERVE_BODY_LIMIT: "4kb", SDSERVE_TRUST_PROXY: "127.0.0.1" } });
});
after(async () => {
  await server?.stop();
});

async function waitDone(id: string, token = TOKEN) {
  return eventually(async () => {
    const r = await api(server, "GET", `/v1/predictions/${id}`, undefined, authHeaders(token));
    return ["succeeded", "failed", "canceled"].includes(r.json["status"] as string) ? r.json : undefined;
  }, `prediction ${id} to finish`);
}

test("health-check answers 200 without a token", async () => {
  const r = await api(server, "GET", "/health-check", undefined, {});
  assert.equal(r.status, 200);
  assert.ok(["READY", "STARTING"].includes(r.json["status"] as string));
});

test("401 without a token or with a wrong one; Bearer and Token schemes both work", async () => {
  const attempts: Record<string, string>[] = [
    {},
    { Authorization: "Bearer nope" },
    { Authorization: `Basic ${TOKEN}` },
  ];
  for (const headers of attempts) {
    const r = await api(server, "GET", "/v1/predictions", undefined, headers);
    assert.equal(r.status, 401);
    assert.match(r.headers.get("content-type") ?? "", /^application\/problem\+json/);
    assert.deepEqual(r.json, {
      title: "Unauthenticated",
      detail: "You did not pass a valid authentication token",
      status: 401,
    });
  }
  assert.equal(
    (await api(server, "GET", "/v1/predictions", undefined, { Authorization: `Token ${TOKEN}` })).status,
    200,
  );
  assert.equal(
    (await api(server, "GET", "/v1/predictions", undefined, { Authorization: `Bearer ${TOKEN}` })).status,
    200,
  );
});

test("422 lists every invalid input at once, in Replicate's shape", async () => {
  const r = await api(server, "POST", "/v1/predictions", {
    version: VERSION,
    input: { width: 65, num_outputs: 5, guidance_scale: 0.5, scheduler: "EULER", prompt: 42, seed: 1.5, height: "512" },
  });
  assert.equal(r.status, 422);
  assert.match(r.headers.get("content-type") ?? "", /^application\/problem\+json/);
  assert.equal(r.json["title"], "Input validation failed");
  assert.equal(r.json["status"], 422);
  const fields = r.json["invalid_fields"] as { type: string; field: string; description: string }[];
  const byField = Object.fromEntries(fields.map((f) => [f.field, f]));
  assert.deepEqual(byField["input.width"], {
    type: "enum",
    field: "input.width",
    description: "width must be one of the following: 128, 256, 384, 448, 512, 576, 640, 704, 768, 832, 896, 960, 1024",
  });
  assert.deepEqual(byField["input.num_outputs"], {
    type: "number_lte",
    field: "input.num_outputs",
    description: "Must be less than or equal to 4",
  });
  assert.equal(byField["input.guidance_scale"]?.description, "Must be greater than or equal to 1");
  assert.equal(
    byField["input.scheduler"]?.description,
    'scheduler must be one of the following: "DDIM", "K_EULER", "DPMSolverMultistep", "K_EULER_ANCESTRAL", "PNDM", "KLMS"',
  );
  assert.equal(byField["input.prompt"]?.description, "Invalid type. Expected: string, given: integer");
  assert.equal(byField["input.seed"]?.description, "Invalid type. Expected: integer, given: number");
  assert.equal(byField["input.height"]?.description, "Invalid type. Expected: integer, given: string");
  assert.equal(fields.length, 7);
  assert.equal(r.json["detail"], fields.map((f) => `- ${f.field}: ${f.description}\n`).join(""));
});

test("the request body: required fields, unknown keys, stream and nulls", async () => {
  let r = await api(server, "POST", "/v1/predictions", { input: {} });
  assert.equal(r.status, 422);
  assert.deepEqual(r.json["invalid_fields"], [{ type: "required", field: "", description: "version is required" }]);
  assert.equal(r.json["detail"], "- version is required\n");

  r = await api(server, "POST", "/v1/predictions", { version: VERSION, input: "cat", model: "x" });
  assert.equal(r.status, 422);
  assert.deepEqual(r.json["invalid_fields"], [
    { type: "invalid_type", field: "input", description: "Invalid type. Expected: object, given: string" },
    { type: "additional_property_not_allowed", field: "", description: "Additional property model is not allowed" },
  ]);

  // Nothing in this model's input is required; `stream` is accepted and ignored; null means "not given";
  // unknown input keys are ignored; 512.0 is an integer.
  r = await api(server, "POST", "/v1/predictions", {
    version: VERSION,
    stream: true,
    input: { ...smallInput(), seed: null, negative_prompt: null, steps: 20, width: 128.0 },
  });
  assert.equal(r.status, 201);
  assert.equal((await waitDone(r.json["id"] as string))["status"], "succeeded");
});

test("versions: 64-hex, owner/name:id and owner/name are accepted; anything else is 422", async () => {
  for (const version of [VERSION, `${MODEL}:${VERSION}`, MODEL]) {
    const r = await api(server, "POST", "/v1/predictions", { version, input: smallInput() });
    assert.equal(r.status, 201, version);
    assert.equal(r.json["version"], SERVED_VERSION);
    assert.equal(r.json["model"], MODEL);
  }
  for (const version of ["0".repeat(64), `other/model:${VERSION}`, "stability-ai/sdxl", "nonsense"]) {
    const r = await api(server, "POST", "/v1/predictions", { version, input: smallInput() });
    assert.equal(r.status, 422, version);
    assert.deepEqual(r.json, {
      title: "Invalid version or not permitted",
      detail: "The specified version does not exist (or perhaps you don't have permission to use it?)",
      status: 422,
    });
  }
  const r = await api(server, "POST", "/v1/models/nobody/nothing/predictions", { input: smallInput() });
  assert.equal(r.status, 404);
  assert.deepEqual(r.json, { detail: "The requested resource could not be found.", status: 404 });
});

test("400 for a body that is not JSON, 413 for one over the limit; an empty body on cancel is fine", async () => {
  let r = await api(server, "POST", "/v1/predictions", "{not json");
  assert.equal(r.status, 400);
  assert.deepEqual(r.json, { title: "Bad request", detail: "Request body is not valid JSON", status: 400 });
  r = await api(server, "POST", "/v1/predictions", "[1, 2]");
  assert.equal(r.status, 400);
  r = await api(server, "POST", "/v1/predictions", '{"version": "x", "input": {"__proto__": {"admin": true}}}');
  assert.equal(r.status, 400);
  // curl -d sends form encoding: the body is still read as JSON.
  r = await api(server, "POST", "/v1/predictions", JSON.stringify({ version: VERSION, input: smallInput() }), {
    Authorization: `Bearer ${TOKEN}`,
    "Content-Type": "application/x-www-form-urlencoded",
  });
  assert.equal(r.status, 201);
  r = await api(server, "POST", "/v1/predictions", { version: VERSION, input: { prompt: "x".repeat(8000) } });
  assert.equal(r.status, 413);
  assert.equal(r.json["status"], 413);

  const created = await api(server, "POST", "/v1/predictions", { version: VERSION, input: smallInput() });
  const res = await fetch(`${server.url}/v1/predictions/${created.json["id"]}/cancel`, {
    method: "POST",
    headers: authHeaders(),
  });
  assert.equal(res.status, 200);
});

test("another token's prediction is 404 to get and to cancel, and absent from its list", async () => {
  const mine = await api(server, "POST", "/v1/predictions", { version: VERSION, input: smallInput() });
  const id = mine.json["id"] as string;
  for (const [method, route] of [
    ["GET", `/v1/predictions/${id}`],
    ["POST", `/v1/predictions/${id}/cancel`],
  ] as const) {
    const r = await api(server, method, route, undefined, authHeaders(OTHER_TOKEN));
    assert.equal(r.status, 404);
    assert.deepEqual(r.json, { detail: "The requested resource could not be found.", status: 404 });
  }
  const list = await api(server, "GET", "/v1/predictions", undefined, authHeaders(OTHER_TOKEN));
  assert.ok(!(list.json["results"] as { id: string }[]).some((p) => p.id === id));
  assert.equal((await waitDone(id))["status"], "succeeded");
  assert.equal((await api(server, "GET", "/v1/predictions/doesnotexist")).status, 404);
});

test("Prefer: wait holds the response until the prediction is done", async () => {
  const r = await api(
    server,
    "POST",
    "/v1/predictions",
    { version: VERSION, input: smallInput() },
    {
      ...authHeaders(),
      Prefer: "wait",
    },
  );
  assert.equal(r.status, 201);
  assert.equal(r.headers.get("preference-applied"), "wait");
  assert.equal(r.headers.get("location"), (r.json["urls"] as Record<string, string>)["get"]);
  assert.equal(r.json["status"], "succeeded");
  assert.equal((r.json["output"] as string[]).length, 1);

  // A model failure is still a 201; the failure is in the body.
  const failed = await api(
    server,
    "POST",
    "/v1/predictions",
    { version: VERSION, input: smallInput({ width: 1024, height: 1024 }) },
    { ...authHeaders(), Prefer: "respond-async, wait=30" },
  );
  assert.equal(failed.status, 201);
  assert.equal(failed.headers.get("preference-applied"), "wait=30");
  assert.equal(failed.json["status"], "failed");
  assert.match(failed.json["error"] as string, /^Maximum size is 1024x768 or 768x1024 pixels/);
});

test("Prefer: wait=N that runs out answers status starting and no output; a GET tells the truth", async () => {
  const r = await api(
    server,
    "POST",
    "/v1/predictions",
    { version: VERSION, input: slowInput() },
    {
      ...authHeaders(),
      Prefer: "wait=1",
    },
  );
  assert.equal(r.status, 201);
  assert.equal(r.headers.get("preference-applied"), "wait=1");
  assert.equal(r.json["status"], "starting");
  assert.equal(r.json["output"], null);
  const id = r.json["id"] as string;
  const running = await eventually(async () => {
    const g = await api(server, "GET", `/v1/predictions/${id}`);
    return g.json["status"] === "processing" ? g.json : undefined;
  }, "processing");
  assert.ok(running["started_at"]);
  const canceled = await api(server, "POST", `/v1/predictions/${id}/cancel`);
  assert.equal(canceled.json["status"], "canceled");

  // wait=300 is clamped to the server's maximum; garbage is no wait at all.
  const clamped = await api(
    server,
    "POST",
    "/v1/predictions",
    { version: VERSION, input: smallInput() },
    {
      ...authHeaders(),
      Prefer: "wait=300",
    },
  );
  assert.equal(clamped.headers.get("preference-applied"), "wait=60");
  const garbage = await api(
    server,
    "POST",
    "/v1/predictions",
    { version: VERSION, input: smallInput() },
    {
      ...authHeaders(),
      Prefer: "wait=soon",
    },
  );
  assert.equal(garbage.headers.get("preference-applied"), null);
  assert.equal(garbage.json["status"], "starting");
});

test("list: cursor pagination both ways, filters carried into next/previous, prefix kept", async () => {
  const ids: string[] = [];
  for (let i = 0; i < 5; i++) {
    const r = await api(
      server,
      "POST",
      "/replicate/v1/predictions",
      { version: VERSION, input: smallInput() },
      authHeaders(OTHER_TOKEN),
    );
    ids.push(r.json["id"] as string);
  }
  for (const id of ids) await waitDone(id, OTHER_TOKEN);
  const newestFirst = [...ids].reverse();
  const seen: string[] = [];
  let url: string | null = "/replicate/v1/predictions?page_size=2&status=succeeded";
  const pages: Record<string, unknown>[] = [];
  while (url) {
    const r = await api(server, "GET", url, undefined, authHeaders(OTHER_TOKEN));
    assert.equal(r.status, 200);
    pages.push(r.json);
    seen.push(...(r.json["results"] as { id: string }[]).map((p) => p.id));
    url = r.json["next"] as string | null;
    if (url) {
      assert.ok(url.startsWith(`${server.url}/replicate/v1/predictions?`), url);
      assert.match(url, /status=succeeded/);
      assert.match(url, /page_size=2/);
    }
  }
  assert.deepEqual(seen.slice(0, 5), newestFirst);
  assert.equal(pages[0]?.["previous"], null);
  // Back from the last page: previous pages repeat what was seen, in the same order.
  const back: string[] = [];
  let prev = pages[pages.length - 1]?.["previous"] as string | null;
  while (prev) {
    const r = await api(server, "GET", prev, undefined, authHeaders(OTHER_TOKEN));
    back.unshift(...(r.json["results"] as { id: string }[]).map((p) => p.id));
    prev = r.json["previous"] as string | null;
  }
  assert.deepEqual(back, seen.slice(0, back.length));
  const lastPage = pages[pages.length - 1] as Record<string, unknown>;
  assert.equal(back.length, seen.length - (lastPage["results"] as unknown[]).length);

  const bad = await api(
    server,
    "GET",
    "/v1/predictions?created_after=yesterday&status=done",
    undefined,
    authHeaders(OTHER_TOKEN),
  );
  assert.equal(bad.status, 422);
  const none = await api(
    server,
    "GET",
    "/v1/predictions?created_after=2999-01-01T00:00:00Z",
    undefined,
    authHeaders(OTHER_TOKEN),
  );
  assert.deepEqual(none.json, { previous: null, next: null, results: [] });
});

test("output files: content type and length, HEAD, no token needed; unknown files are 404", async () => {
  const r = await api(
    server,
    "POST",
    "/v1/predictions",
    { version: VERSION, input: smallInput() },
    {
      ...authHeaders(),
      Prefer: "wait",
    },
  );
  const url = (r.json["output"] as string[])[0] as string;
  const head = await fetch(url, { method: "HEAD" });
  assert.equal(head.status, 200);
  assert.equal(head.headers.get("content-type"), "image/png");
  const length = Number(head.headers.get("content-length"));
  const get = await fetch(url);
  const bytes = new Uint8Array(await get.arrayBuffer());
  assert.equal(bytes.length, length);
  assert.deepEqual([...bytes.slice(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  assert.equal((await fetch(url.replace(/out-0\.png$/, "out-1.png"))).status, 404);
  assert.equal((await fetch(url.replace(/files\/[a-z2-7]+/, "files/abc"))).status, 404);
});

test("URLs follow X-Forwarded-Proto and X-Forwarded-Host from a trusted proxy", async () => {
  const r = await api(
    server,
    "POST",
    "/v1/predictions",
    { version: VERSION, input: smallInput() },
    {
      ...authHeaders(),
      "X-Forwarded-Proto": "https",
      "X-Forwarded-Host": "sd.example.org",
    },
  );
  assert.equal(
    (r.json["urls"] as Record<string, string>)["get"],
    `https://sd.example.org/v1/predictions/${r.json["id"]}`,
  );
  await waitDone(r.json["id"] as string);
});

test("Cancel-After: the prediction carries a deadline; a bad value is 422", async () => {
  const bad = await api(
    server,
    "POST",
    "/v1/predictions",
    { version: VERSION, input: smallInput() },
    {
      ...authHeaders(),
      "Cancel-After": "2s",
    },
  );
  assert.equal(bad.status, 422);
  // Beyond Date's range (once a 500) or past the week's maximum; and a value of many digits.
  for (const value of ["99999999999999999999s", "169h", `${"1".repeat(29)}x`, `${"1".repeat(8000)}s`]) {
    const r = await api(
      server,
      "POST",
      "/v1/predictions",
      { version: VERSION, input: smallInput() },
      { ...authHeaders(), "Cancel-After": value },
    );
    assert.equal(r.status, 422, value.slice(0, 40));
    assert.equal(r.json["title"], "Invalid Cancel-After header");
  }
  const r = await api(
    server,
    "POST",
    "/v1/predictions",
    { version: VERSION, input: slowInput() },
    {
      ...authHeaders(),
      "Cancel-After": "5s",
    },
  );
  assert.equal(r.status, 201);
  const deadline = Date.parse(r.json["deadline"] as string);
  const created = Date.parse(r.json["created_at"] as string);
  assert.equal(Math.round((deadline - created) / 1000), 5);
  const done = await waitDone(r.json["id"] as string);
  assert.equal(done["status"], "canceled");
  assert.match(done["logs"] as string, /reached its deadline/);
});

test("Idempotency-Key: longer than 255 characters is a 422", async () => {
  const r = await api(
    server,
    "POST",
    "/v1/predictions",
    { version: VERSION, input: smallInput() },
    { ...authHeaders(), "Idempotency-Key": "k".repeat(256) },
  );
  assert.equal(r.status, 422);
  assert.equal(r.json["title"], "Invalid Idempotency-Key header");
});

test("Idempotency-Key: the same key gives back the same prediction", async () => {
  const headers = { ...authHeaders(), "Idempotency-Key": "order-77" };
  const a = await api(server, "POST", "/v1/predictions", { version: VERSION, input: smallInput() }, headers);
  const b = await api(server, "POST", "/v1/predictions", { version: VERSION, input: smallInput() }, headers);
  assert.equal(a.json["id"], b.json["id"]);
  // Keys are per token.
  const c = await api(
    server,
    "POST",
    "/v1/predictions",
    { version: VERSION, input: smallInput() },
    {
      ...authHeaders(OTHER_TOKEN),
      "Idempotency-Key": "order-77",
    },
  );
  assert.notEqual(c.json["id"], a.json["id"]);
  // Concurrent retries with one key make one prediction.
  const racing = await Promise.all(
    Array.from({ length: 5 }, () =>
      api(
        server,
        "POST",
        "/v1/predictions",
        { version: VERSION, input: smallInput() },
        {
          ...authHeaders(),
          "Idempotency-Key": "order-78",
        },
      ),
    ),
  );
  assert.equal(new Set(racing.map((r) => r.json["id"])).size, 1);
  await waitDone(racing[0]?.json["id"] as string);
  await waitDone(a.json["id"] as string);
  await waitDone(c.json["id"] as string, OTHER_TOKEN);
});

test("unknown routes are problem+json 404s", async () => {
  const r = await api(server, "GET", "/v1/collections");
  assert.equal(r.status, 404);
  assert.equal(r.json["status"], 404);
});

test("a full queue answers 429 with Retry-After; outputs past retention are removed", async () => {
  const small = await startSdserve({
    env: { SDSERVE_QUEUE_MAX: "2", SDSERVE_QUEUE_MAX_PER_TOKEN: "2", SDSERVE_OUTPUT_RETENTION: "2s" },
  });
  try {
    const done = await api(
      small,
      "POST",
      "/v1/predictions",
      { version: VERSION, input: smallInput() },
      {
        ...authHeaders(),
        Prefer: "wait",
      },
    );
    assert.equal(done.json["status"], "succeeded");
    const file = (done.json["output"] as string[])[0] as string;

    const a = await api(small, "POST", "/v1/predictions", { version: VERSION, input: slowInput() });
    const b = await api(small, "POST", "/v1/predictions", { version: VERSION, input: slowInput() });
    assert.equal(a.status, 201);
    assert.equal(b.status, 201);
    const c = await api(small, "POST", "/v1/predictions", { version: VERSION, input: slowInput() });
    assert.equal(c.status, 429);
    assert.equal(c.headers.get("retry-after"), "10");
    assert.equal(c.json["retry_after"], 10);
    await api(small, "POST", `/v1/predictions/${b.json["id"]}/cancel`);
    await api(small, "POST", `/v1/predictions/${a.json["id"]}/cancel`);
    assert.equal((await api(small, "POST", "/v1/predictions", { version: VERSION, input: smallInput() })).status, 201);

    const removed = await eventually(async () => {
      const g = await api(small, "GET", `/v1/predictions/${done.json["id"]}`);
      return g.json["data_removed"] === true ? g.json : undefined;
    }, "retention to remove the outputs");
    assert.equal(removed["output"], null);
    assert.deepEqual(removed["input"], {});
    assert.equal(removed["status"], "succeeded");
    assert.equal((await fetch(file)).status, 410);
  } finally {
    await small.stop();
  }
});

test("urls.web opens a page without a token: status, escaped input, images", async () => {
  const r = await api(
    server,
    "POST",
    "/v1/predictions",
    { version: VERSION, input: smallInput({ prompt: "<script>x</script>" }) },
    {
      ...authHeaders(),
      Prefer: "wait",
    },
  );
  const urls = r.json["urls"] as Record<string, string>;
  assert.match(urls["web"] as string, new RegExp(`^${server.url}/p/[a-z2-7]+$`));
  const page = await fetch(urls["web"] as string);
  assert.equal(page.status, 200);
  assert.match(page.headers.get("content-type") ?? "", /^text\/html/);
  const html = await page.text();
  assert.ok(html.includes(r.json["id"] as string));
  assert.ok(html.includes((r.json["output"] as string[])[0] as string));
  assert.ok(!html.includes("<script>x</script>"));
  assert.ok(html.includes("&#60;script&#62;x&#60;/script&#62;"));
  assert.equal((await fetch(`${server.url}/p/${r.json["id"]}`)).status, 404);
});

test("web pages: the playground, a prediction's section alone, static files; scripts only from /static", async () => {
  const home = await fetch(`${server.url}/`);
  assert.equal(home.status, 200);
  const csp = home.headers.get("content-security-policy") ?? "";
  assert.match(csp, /script-src 'self'/);
  assert.doesNotMatch(csp, /unsafe-inline/);
  assert.equal(home.headers.get("referrer-policy"), "no-referrer");
  const html = await home.text();
  assert.match(html, /<form id="playground-form"/);
  assert.match(html, /<select id="field-scheduler" name="scheduler"/);
  assert.doesNotMatch(html, /<script>/);

  const r = await api(
    server,
    "POST",
    "/v1/predictions",
    { version: VERSION, input: smallInput({ seed: 3 }) },
    { ...authHeaders(), Prefer: "wait" },
  );
  const web = (r.json["urls"] as Record<string, string>)["web"] as string;
  const embed = await (await fetch(`${web}?fragment=embed`)).text();
  assert.match(embed, /^<section class="prediction embed"/);
  assert.ok(embed.includes((r.json["output"] as string[])[0] as string));
  assert.match(embed, /<dd data-detail="seed">3<\/dd>/);

  const css = await fetch(`${server.url}/static/sdserve.css`);
  assert.equal(css.status, 200);
  assert.match(css.headers.get("content-type") ?? "", /^text\/css/);
  const etag = css.headers.get("etag") as string;
  const again = await fetch(`${server.url}/static/sdserve.css`, { headers: { "If-None-Match": etag } });
  assert.equal(again.status, 304);
  assert.match((await fetch(`${server.url}/static/playground.js`)).headers.get("content-type") ?? "", /javascript/);
  assert.equal((await fetch(`${server.url}/static/..%2Fhtml.ts`)).status, 404);
  assert.equal((await fetch(`${server.url}/static/nothing.js`)).status, 404);
});
