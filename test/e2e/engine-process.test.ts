/**
 * The engine's child process, seen from outside: when it dies mid-generation the prediction
 * fails with a clear error and a new engine process loads the model; it ends with the server,
 * after SIGTERM (the server cancels, then closes it) and after SIGKILL (it sees its parent gone
 * and exits by itself). Linux only: it finds the children through /proc.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { test } from "node:test";
import { api, authHeaders, eventually, slowInput, smallInput, startSdserve, VERSION } from "./server.js";

const skip = process.platform !== "linux" ? "reads /proc" : false;

/** The ids of the processes whose parent is `pid`. */
function childrenOf(pid: number): number[] {
  const children: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // pid (comm) state ppid …; comm may hold spaces and parentheses, so read after the last ")".
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === pid) children.push(Number(entry));
    } catch {
      // Gone meanwhile.
    }
  }
  return children;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The server's engine process, once a prediction runs in it. */
async function engineWhileRunning(
  server: Awaited<ReturnType<typeof startSdserve>>,
): Promise<{ engine: number; prediction: string }> {
  const created = await api(server, "POST", "/v1/predictions", { version: VERSION, input: slowInput() });
  assert.equal(created.status, 201);
  const prediction = created.json["id"] as string;
  await eventually(async () => {
    const p = await api(server, "GET", `/v1/predictions/${prediction}`);
    return /\| [1-9]\d*\/500 \[/.test(String(p.json["logs"])) ? true : undefined;
  }, "the first step");
  const children = childrenOf(server.proc.pid as number);
  assert.equal(children.length, 1, `one engine process for the one model, found ${children.join(", ")}`);
  return { engine: children[0] as number, prediction };
}

test("an engine process killed mid-generation: the prediction fails clearly, a new engine loads the model", {
  skip,
}, async () => {
  const server = await startSdserve();
  try {
    const { engine, prediction } = await engineWhileRunning(server);
    process.kill(engine, "SIGKILL");
    const failed = await eventually(async () => {
      const p = await api(server, "GET", `/v1/predictions/${prediction}`);
      return p.json["status"] === "processing" ? undefined : p.json;
    }, "the prediction to end");
    assert.equal(failed["status"], "failed");
    assert.match(
      String(failed["error"]),
      /^The engine stopped unexpectedly while making this prediction; the model is being loaded again/,
    );
    await eventually(async () => {
      const h = await api(server, "GET", "/health-check", undefined, {});
      return h.json["status"] === "READY" ? true : undefined;
    }, "the model to be READY again");
    const [again] = childrenOf(server.proc.pid as number);
    assert.ok(again !== undefined && again !== engine, "a new engine process");
    const next = await api(
      server,
      "POST",
      "/v1/predictions",
      { version: VERSION, input: smallInput() },
      { ...authHeaders(), Prefer: "wait=60" },
    );
    assert.equal(next.json["status"], "succeeded", String(next.json["error"]));
    assert.match(server.output(), /the engine process ended \(signal SIGKILL\); loading the model again/);
  } finally {
    await server.stop();
  }
});

test("SIGTERM during a generation: the server exits 0 and its engine process is gone", { skip }, async () => {
  const server = await startSdserve();
  const { engine } = await engineWhileRunning(server);
  assert.equal(await server.stop(), 0);
  await eventually(async () => (alive(engine) ? undefined : true), "the engine process to end", {
    attempts: 100,
  });
});

test("SIGKILL of the server: its engine process ends by itself", { skip }, async () => {
  const server = await startSdserve();
  const { engine } = await engineWhileRunning(server);
  await server.kill();
  // It notices between two steps (a step of the slow input is well under a second).
  await eventually(async () => (alive(engine) ? undefined : true), "the orphaned engine process to end", {
    attempts: 300,
  });
});
