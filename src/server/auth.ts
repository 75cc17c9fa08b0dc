/**
 * API tokens. `Authorization: Bearer <token>` (both official clients) or the older
 * `Token <token>`. Each token is its own account: it sees and cancels only its own predictions.
 */
import crypto, { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { privateDir, tightenIfPresent } from "./private-files.js";

const TOKEN_FILE = "api-token";

/**
 * Every API request pays for this: the one-shot crypto.hash costs a fraction of a Hash object's
 * create, update and digest (Node 20.12 and later; before that, the Hash object).
 */
const sha256Hex: (text: string) => string =
  typeof crypto.hash === "function"
    ? (text) => crypto.hash("sha256", text, "hex")
    : (text) => createHash("sha256").update(text).digest("hex");

function accountOf(token: string): string {
  return sha256Hex(token);
}

/** An --api-auth user (AUTOMATIC1111's HTTP Basic users). */
export interface BasicUser {
  user: string;
  password: string;
}

/** Compares digests, so neither the length nor the first differing byte shows in the timing. */
function sameSecret(a: string, b: string): boolean {
  return timingSafeEqual(createHash("sha256").update(a).digest(), createHash("sha256").update(b).digest());
}

export class TokenAuth {
  private readonly accounts: Set<string>;

  constructor(
    tokens: readonly string[],
    private readonly basicUsers: readonly BasicUser[] = [],
  ) {
    // Only digests are kept in memory and in the store: a database copy reveals no token.
    this.accounts = new Set(tokens.map(accountOf));
  }

  /**
   * As authenticate, and also HTTP Basic as AUTOMATIC1111's --api-auth has it: an --api-auth
   * user (its own account), or any user name with an API token as the password (that token's
   * account, so front-ends that only know Basic auth share the token's predictions).
   */
  authenticateWithBasic(header: string | undefined): string | undefined {
    const m = /^\s*Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header ?? "");
    if (!m) return this.authenticate(header);
    const decoded = Buffer.from(m[1] as string, "base64").toString("utf8");
    const colon = decoded.indexOf(":");
    if (colon < 0) return undefined;
    const user = decoded.slice(0, colon);
    const password = decoded.slice(colon + 1);
    const known = this.basicUsers.find((u) => sameSecret(u.user, user) && sameSecret(u.password, password));
    if (known) return createHash("sha256").update(`sdserve-basic-user\n${known.user}`).digest("hex");
    const account = accountOf(password);
    return this.accounts.has(account) ? account : undefined;
  }

  /** The account of an Authorization header value, or undefined when it carries no valid token. */
  authenticate(header: string | undefined): string | undefined {
    const m = /^\s*(Bearer|Token)\s+(\S+)\s*$/i.exec(header ?? "");
    if (!m) return undefined;
    const account = accountOf(m[2] as string);
    return this.accounts.has(account) ? account : undefined;
  }
}

/** r8_ and 37 characters of [A-Za-z0-9], the look of Replicate's tokens. */
function newToken(): string {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  let out = "r8_";
  for (const b of randomBytes(64)) {
    if (b >= 248) continue; // 248 = 62 × 4: keeps the draw uniform
    out += alphabet[b % 62];
    if (out.length === 40) break;
  }
  return out;
}

/**
 * The configured tokens; with none configured, the token kept in the data directory, made on
 * first start (`created` tells the caller to print it).
 */
export async function resolveApiTokens(
  configured: readonly string[],
  dataDir: string,
): Promise<{ tokens: string[]; created?: string; file?: string }> {
  if (configured.length > 0) return { tokens: [...configured] };
  const file = path.join(dataDir, TOKEN_FILE);
  await privateDir(dataDir);
  const existing = (await readFile(file, "utf8").catch(() => "")).trim();
  if (existing) {
    await tightenIfPresent(file);
    return { tokens: [existing], file };
  }
  const token = newToken();
  await writeFile(file, `${token}\n`, { mode: 0o600 });
  await tightenIfPresent(file);
  return { tokens: [token], created: token, file };
}
