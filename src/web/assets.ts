/**
 * The pages' static files (src/web/static: stylesheet, browser modules, icon), read once at
 * start and served as they are: no bundler, no build step. The build copies the folder next to
 * the compiled pages, so the same relative path works from src/ (tsx) and from dist/.
 */
import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const STATIC_DIR = fileURLToPath(new URL("./static/", import.meta.url));

const CONTENT_TYPES: Record<string, string> = {
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
};

export interface StaticAsset {
  body: Buffer;
  contentType: string;
  /** A strong validator: the content's hash. */
  etag: string;
}

/** name → asset, for every file of a served type. */
export function loadStaticAssets(dir = STATIC_DIR): Map<string, StaticAsset> {
  const assets = new Map<string, StaticAsset>();
  for (const name of readdirSync(dir)) {
    const contentType = CONTENT_TYPES[path.extname(name)];
    if (!contentType) continue;
    const body = readFileSync(path.join(dir, name));
    const etag = `"${createHash("sha256").update(body).digest("base64url").slice(0, 22)}"`;
    assets.set(name, { body, contentType, etag });
  }
  return assets;
}
