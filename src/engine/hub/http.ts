/**
 * HTTP to the hub (or a mirror): one fetch for @huggingface/hub's API calls and for our own
 * ranged downloads. It adds the token (only ever to the endpoint's own origin; fetch drops it
 * on redirects to the CDN) and a User-Agent, and turns the hub's refusals into HubErrors that
 * say what to do, using the X-Error-Code header the hub sets (RepoNotFound, GatedRepo,
 * RevisionNotFound, EntryNotFound), as huggingface_hub does.
 */
import { HubError } from "../errors.js";
import { SDSERVE_VERSION } from "../version.js";
import type { HubSettings } from "./settings.js";

export const USER_AGENT = `sdserve/${SDSERVE_VERSION}; hf_hub/js`;

export interface HubFetchContext {
  settings: HubSettings;
  repo: string;
  revision: string;
  signal?: AbortSignal;
}

/** A failure worth retrying: the connection, or the server's temporary trouble. */
export class TransientHubError extends HubError {
  constructor(message: string) {
    super("unreachable", message);
  }
}

const FALLBACK =
  "use weights already on this machine instead (a local folder, or HF_HUB_OFFLINE=1 with a filled Hugging Face cache)";

export function unreachable(settings: HubSettings, err: unknown): TransientHubError {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  const why = cause?.code ?? cause?.message ?? (err instanceof Error ? err.message : String(err));
  return new TransientHubError(
    `cannot reach ${settings.endpoint} (${why}): check the network connection, set HF_ENDPOINT to a reachable mirror, or ${FALLBACK}`,
  );
}

/** The HubError for a refused request, or undefined for a success (2xx, and 416 which the caller handles). */
export async function refusal(ctx: HubFetchContext, res: Response): Promise<HubError | undefined> {
  if (res.ok || res.status === 416) return undefined;
  const { settings, repo, revision } = ctx;
  const code = res.headers.get("x-error-code");
  const detail = (await res.text().catch(() => "")).slice(0, 300);
  const page = `${settings.endpoint}/${repo}`;
  const token = settings.token !== undefined;
  if (code === "GatedRepo") {
    return new HubError(
      "gated",
      token
        ? `${repo} is gated and the account of the token given (HF_TOKEN) has no access yet: accept its conditions at ${page} while logged in as that account`
        : `${repo} is gated: accept its conditions at ${page}, then set HF_TOKEN to a read token of that account (https://huggingface.co/settings/tokens)`,
    );
  }
  if (code === "RepoNotFound") {
    return new HubError(
      "not-found",
      token
        ? `${repo} was not found on ${settings.endpoint}, or the token given (HF_TOKEN) cannot read it: check the id`
        : `${repo} was not found on ${settings.endpoint}: check the id, or if it is private set HF_TOKEN to a token that can read it`,
    );
  }
  if (code === "RevisionNotFound") {
    return new HubError(
      "not-found",
      `${repo} has no revision "${revision}" on ${settings.endpoint}: check the branch, tag or commit`,
    );
  }
  if (code === "EntryNotFound") {
    const file = decodeURIComponent(new URL(res.url || "http://x/").pathname.split("/").slice(5).join("/"));
    return new HubError("not-found", `${repo}@${revision} has no file ${file} on ${settings.endpoint}`);
  }
  if (res.status === 401 || res.status === 403) {
    return new HubError(
      "unauthorized",
      token
        ? `${settings.endpoint} refused the token given (HF_TOKEN) for ${repo} (${res.status}): check that it is valid and can read the repository`
        : `${settings.endpoint} asks for a token for ${repo} (${res.status}): set HF_TOKEN to a read token (https://huggingface.co/settings/tokens)`,
    );
  }
  if (res.status === 404) {
    return new HubError(
      "not-found",
      `${repo} was not found on ${settings.endpoint} (404 for ${new URL(res.url || page).pathname})`,
    );
  }
  if (res.status === 429 || res.status >= 500) {
    return new TransientHubError(
      `${settings.endpoint} answered ${res.status} ${res.statusText}${detail ? ` (${detail.trim()})` : ""}: try again later, set HF_ENDPOINT to a mirror, or ${FALLBACK}`,
    );
  }
  return new HubError("protocol", `${settings.endpoint} answered ${res.status} ${res.statusText} for ${res.url}`);
}

/**
 * fetch for the hub: the token on the endpoint's origin, a User-Agent, the context's abort
 * signal, and refusals thrown as HubErrors. Also what @huggingface/hub's calls are given.
 */
export function hubFetch(ctx: HubFetchContext): typeof fetch {
  const origin = new URL(ctx.settings.endpoint).origin;
  return async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const url = new URL(input instanceof Request ? input.url : input);
    const headers = new Headers(init?.headers);
    if (!headers.has("user-agent")) headers.set("user-agent", USER_AGENT);
    if (ctx.settings.token && url.origin === origin && !headers.has("authorization")) {
      headers.set("authorization", `Bearer ${ctx.settings.token}`);
    }
    let res: Response;
    try {
      res = await fetch(url, { ...init, headers, signal: ctx.signal ?? init?.signal ?? null });
    } catch (err) {
      if (ctx.signal?.aborted) throw ctx.signal.reason;
      throw unreachable(ctx.settings, err);
    }
    const problem = await refusal(ctx, res);
    if (problem) throw problem;
    return res;
  };
}
