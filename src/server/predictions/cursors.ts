/**
 * The list's cursors: an opaque, URL-safe encoding of a page boundary (created_at, id) and the
 * direction to read from it. A cursor that does not decode is the caller's fault, not ours.
 */
import type { ListPosition } from "../store/store.js";

export type CursorDirection = "next" | "previous";

export interface Cursor {
  direction: CursorDirection;
  position: ListPosition;
}

export function encodeCursor(direction: CursorDirection, p: ListPosition): string {
  return Buffer.from(JSON.stringify({ d: direction === "next" ? "n" : "p", c: p.createdAt, i: p.id })).toString(
    "base64url",
  );
}

export function decodeCursor(cursor: string): Cursor | undefined {
  try {
    const v = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8")) as {
      d?: unknown;
      c?: unknown;
      i?: unknown;
    };
    if ((v.d !== "n" && v.d !== "p") || typeof v.c !== "string" || typeof v.i !== "string") return undefined;
    return { direction: v.d === "n" ? "next" : "previous", position: { createdAt: v.c, id: v.i } };
  } catch {
    return undefined;
  }
}
