/**
 * Where the Hugging Face Hub is and how to reach it, read from the environment variables that
 * Python's huggingface_hub (and so diffusers and transformers) reads, with the same precedence,
 * so that the cache and the login are shared with them:
 *
 * - cache: HF_HUB_CACHE, else HUGGINGFACE_HUB_CACHE (older name), else $HF_HOME/hub, where
 *   HF_HOME defaults to $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface;
 * - endpoint: HF_ENDPOINT (a mirror), else https://huggingface.co;
 * - token: HF_TOKEN, else HUGGING_FACE_HUB_TOKEN (older name), else the file that
 *   `huggingface-cli login` / `hf auth login` writes: HF_TOKEN_PATH, else $HF_HOME/token;
 * - offline: HF_HUB_OFFLINE=1 (also true/yes/on): never touch the network, use the cache only.
 *
 * @huggingface/hub reads only the cache variables by itself; this is the one place that reads
 * the rest, and the downloader receives the result.
 */
import { readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";

export const DEFAULT_HUB_ENDPOINT = "https://huggingface.co";

export interface HubSettings {
  /** Origin (and optional path) of the hub or mirror, without a trailing slash. */
  endpoint: string;
  /** Bearer token for gated and private repositories; undefined: anonymous. */
  token: string | undefined;
  /** The hub cache folder holding models--owner--name/{blobs,snapshots,refs}. */
  cacheDir: string;
  /** Use the cache only; any need for the network is an error that says so. */
  offline: boolean;
}

const TRUE = new Set(["1", "true", "yes", "on"]);

function nonEmpty(v: string | undefined): string | undefined {
  return v === undefined || v.trim() === "" ? undefined : v;
}

export function hubHome(env: NodeJS.ProcessEnv = process.env): string {
  return (
    nonEmpty(env["HF_HOME"]) ??
    path.join(nonEmpty(env["XDG_CACHE_HOME"]) ?? path.join(os.homedir(), ".cache"), "huggingface")
  );
}

export function hubSettingsFromEnv(env: NodeJS.ProcessEnv = process.env): HubSettings {
  const home = hubHome(env);
  const cacheDir = nonEmpty(env["HF_HUB_CACHE"]) ?? nonEmpty(env["HUGGINGFACE_HUB_CACHE"]) ?? path.join(home, "hub");
  const endpoint = (nonEmpty(env["HF_ENDPOINT"]) ?? DEFAULT_HUB_ENDPOINT).trim().replace(/\/+$/, "");
  let token = nonEmpty(env["HF_TOKEN"]) ?? nonEmpty(env["HUGGING_FACE_HUB_TOKEN"]);
  if (token === undefined) {
    const file = nonEmpty(env["HF_TOKEN_PATH"]) ?? path.join(home, "token");
    try {
      token = nonEmpty(readFileSync(file, "utf8").trim());
    } catch {
      // No login: anonymous access, which is all that public models need.
    }
  }
  return {
    endpoint,
    token: token?.trim(),
    cacheDir: path.resolve(cacheDir),
    offline: TRUE.has((env["HF_HUB_OFFLINE"] ?? "").trim().toLowerCase()),
  };
}
