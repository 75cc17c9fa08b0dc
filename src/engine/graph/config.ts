/**
 * Typed access to a component's config.json: every read names the file and key, and a
 * value of the wrong kind or an unsupported option is a ModelError, never a silent guess.
 */
import { ModelError } from "../errors.js";

export class ConfigReader {
  constructor(
    readonly file: string,
    readonly raw: Readonly<Record<string, unknown>>,
  ) {}

  fail(field: string, message: string): never {
    throw new ModelError(message, { file: this.file, field });
  }

  private value(key: string): unknown {
    const v = this.raw[key];
    return v === null ? undefined : v;
  }

  has(key: string): boolean {
    return this.value(key) !== undefined;
  }

  int(key: string, fallback?: number): number {
    const v = this.value(key) ?? fallback;
    if (typeof v !== "number" || !Number.isInteger(v) || v < 0) {
      this.fail(
        key,
        v === undefined
          ? "missing (a non-negative integer is required)"
          : `must be an integer, got ${JSON.stringify(v)}`,
      );
    }
    return v;
  }

  num(key: string, fallback?: number): number {
    const v = this.value(key) ?? fallback;
    if (typeof v !== "number" || !Number.isFinite(v)) {
      this.fail(key, v === undefined ? "missing (a number is required)" : `must be a number, got ${JSON.stringify(v)}`);
    }
    return v;
  }

  str(key: string, fallback?: string): string {
    const v = this.value(key) ?? fallback;
    if (typeof v !== "string") {
      this.fail(key, v === undefined ? "missing (a string is required)" : `must be a string, got ${JSON.stringify(v)}`);
    }
    return v;
  }

  bool(key: string, fallback?: boolean): boolean {
    const v = this.value(key) ?? fallback;
    if (typeof v !== "boolean") {
      this.fail(
        key,
        v === undefined ? "missing (true or false is required)" : `must be true or false, got ${JSON.stringify(v)}`,
      );
    }
    return v;
  }

  strList(key: string, fallback?: readonly string[]): string[] {
    const v = this.value(key) ?? fallback;
    if (!Array.isArray(v) || !v.every((x) => typeof x === "string")) this.fail(key, "must be a list of strings");
    return [...v] as string[];
  }

  intList(key: string, fallback?: readonly number[]): number[] {
    const v = this.value(key) ?? fallback;
    if (!Array.isArray(v) || !v.every((x) => typeof x === "number" && Number.isInteger(x) && x > 0)) {
      this.fail(key, "must be a list of positive integers");
    }
    return [...v] as number[];
  }

  /** An int applying to every block, or one int per block (diffusers accepts both). */
  perBlock(key: string, blocks: number, fallback?: number): number[] {
    const v = this.value(key) ?? fallback;
    if (typeof v === "number" && Number.isInteger(v) && v > 0) return new Array(blocks).fill(v);
    if (Array.isArray(v) && v.every((x) => typeof x === "number" && Number.isInteger(x) && x > 0)) {
      if (v.length !== blocks) this.fail(key, `has ${v.length} entries, expected one per block (${blocks})`);
      return [...v] as number[];
    }
    return this.fail(key, `must be a positive integer or a list of ${blocks}, got ${JSON.stringify(v)}`);
  }

  /** The option must be absent or equal to its default: we do not support anything else. */
  expectDefault(key: string, ...allowed: unknown[]): void {
    const v = this.value(key);
    if (v === undefined) return;
    if (!allowed.some((a) => JSON.stringify(a) === JSON.stringify(v))) {
      this.fail(
        key,
        `${JSON.stringify(v)} is not supported (supported: ${allowed.map((a) => JSON.stringify(a)).join(", ")})`,
      );
    }
  }
}
