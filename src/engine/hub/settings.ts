/**
 * Where the Hugging Face Hub is and how to reach it. The engine receives these; sdserve's
 * settings (src/config.ts) read them from the environment variables that Python's
 * huggingface_hub reads, with the same precedence, so that the cache and the login are shared.
 */

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
