/** sdserve's version: package.json's, read once (two folders up from src/engine/ and dist/engine/ alike). */
import { readFileSync } from "node:fs";

export const SDSERVE_VERSION: string = (
  JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string }
).version;
