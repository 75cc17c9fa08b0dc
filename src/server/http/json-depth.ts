/**
 * The nesting depth of a JSON text, found in one pass without parsing it. Bodies are checked
 * before JSON.parse: everything after the parser (the store's JSON.stringify, the validator,
 * logging) walks values recursively, and 400k nested arrays overflow the stack there. The
 * scan skips strings (with their escapes), so brackets inside them do not count.
 */

/** Deepest nesting of arrays and objects a request body may have. The API's own bodies need 3. */
export const MAX_JSON_DEPTH = 32;

/** True when `text` opens more than `limit` arrays/objects inside each other. Stops at the first excess. */
export function jsonNestsDeeperThan(text: string, limit: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c /* \ */) i++;
      else if (c === 0x22 /* " */) inString = false;
    } else if (c === 0x22) {
      inString = true;
    } else if (c === 0x5b /* [ */ || c === 0x7b /* { */) {
      if (++depth > limit) return true;
    } else if (c === 0x5d /* ] */ || c === 0x7d /* } */) {
      depth--;
    }
  }
  return false;
}
