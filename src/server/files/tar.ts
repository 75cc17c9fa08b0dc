/**
 * A reader of tar archives held in memory (ustar, GNU and pax, as Python's tarfile and GNU tar
 * write them), for the `.tar` files that Replicate's LoRA trainers publish. The bytes come from
 * a URL anyone may name, so this is a parser of hostile input: every header is checked (its
 * checksum, its octal or base-256 size), a member that claims more bytes than the archive holds
 * is an error, names are only ever compared, never used as paths, and the walk is bounded by
 * the buffer's length. Members are views into the buffer; nothing is copied or written.
 */

export class TarError extends Error {
  override readonly name = "TarError";
}

export interface TarMember {
  /** The member's path as stored ("./" prefixes removed). */
  name: string;
  /** "file", "directory", or "other" (links, devices, …: never followed). */
  kind: "file" | "directory" | "other";
  data: Uint8Array;
}

const BLOCK = 512;
/** Extended headers (pax records, GNU long names) larger than this are refused. */
const MAX_EXTENDED_HEADER = 1024 * 1024;
/** Headers read at most: a LoRA tarball has a handful; a huge archive of empty members is refused early. */
export const MAX_TAR_HEADERS = 10_000;

const ascii = (bytes: Uint8Array) => {
  const end = bytes.indexOf(0);
  return Buffer.from(end < 0 ? bytes : bytes.subarray(0, end)).toString("utf8");
};

/** A numeric header field: octal text, or GNU's base-256 form (high bit of the first byte set). */
function number(field: Uint8Array, what: string, at: number): number {
  if (((field[0] as number) & 0x80) !== 0) {
    if (((field[0] as number) & 0x40) !== 0) throw new TarError(`header at byte ${at}: negative ${what}`);
    let v = (field[0] as number) & 0x3f;
    for (let i = 1; i < field.length; i++) {
      v = v * 256 + (field[i] as number);
      if (v > Number.MAX_SAFE_INTEGER) throw new TarError(`header at byte ${at}: ${what} is too large`);
    }
    return v;
  }
  const text = ascii(field).trim();
  if (text === "") return 0;
  if (!/^[0-7]+$/.test(text)) throw new TarError(`header at byte ${at}: ${what} is not an octal number`);
  const v = Number.parseInt(text, 8);
  if (!Number.isSafeInteger(v)) throw new TarError(`header at byte ${at}: ${what} is too large`);
  return v;
}

/** Whether the bytes start with a tar header whose checksum holds. */
export function looksLikeTar(bytes: Uint8Array): boolean {
  if (bytes.length < BLOCK) return false;
  try {
    return checksumOk(bytes.subarray(0, BLOCK), 0);
  } catch {
    return false;
  }
}

function checksumOk(header: Uint8Array, at: number): boolean {
  const stored = number(header.subarray(148, 156), "checksum", at);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : (header[i] as number);
  return sum === stored;
}

/** pax records: "<length> <key>=<value>\n", one after another. */
function paxRecords(data: Uint8Array, at: number): Map<string, string> {
  const out = new Map<string, string>();
  let i = 0;
  while (i < data.length) {
    const space = data.indexOf(0x20, i);
    if (space < 0) break;
    const len = Number(Buffer.from(data.subarray(i, space)).toString("latin1"));
    if (!Number.isSafeInteger(len) || len <= space - i || i + len > data.length) {
      throw new TarError(`pax header at byte ${at}: a malformed record`);
    }
    const record = Buffer.from(data.subarray(space + 1, i + len - 1)).toString("utf8");
    const eq = record.indexOf("=");
    if (eq > 0) out.set(record.slice(0, eq), record.slice(eq + 1));
    i += len;
  }
  return out;
}

/** Every member of the archive, in order. Throws TarError on anything malformed or truncated. */
export function readTar(bytes: Uint8Array): TarMember[] {
  const members: TarMember[] = [];
  let offset = 0;
  let longName: string | undefined;
  let pax: Map<string, string> | undefined;
  for (let headers = 0; ; headers++) {
    if (headers >= MAX_TAR_HEADERS) throw new TarError(`more than ${MAX_TAR_HEADERS} headers: not a LoRA archive`);
    if (offset + BLOCK > bytes.length) {
      // Archives end with two zero blocks; some writers stop after the last member's data.
      if (offset === bytes.length && longName === undefined && pax === undefined) return members;
      throw new TarError(`truncated: a header at byte ${offset} is cut off`);
    }
    const header = bytes.subarray(offset, offset + BLOCK);
    if (header.every((b) => b === 0)) return members;
    if (!checksumOk(header, offset)) throw new TarError(`the header at byte ${offset} has a wrong checksum`);
    const type = String.fromCharCode(header[156] as number);
    let size = number(header.subarray(124, 136), "size", offset);
    const paxSize = pax?.get("size");
    if (paxSize !== undefined) {
      if (!/^\d+$/.test(paxSize) || !Number.isSafeInteger(Number(paxSize))) {
        throw new TarError(`pax header before byte ${offset}: size ${JSON.stringify(paxSize)} is not a number`);
      }
      size = Number(paxSize);
    }
    const dataStart = offset + BLOCK;
    if (size > bytes.length - dataStart) {
      throw new TarError(
        `truncated: the member at byte ${offset} declares ${size} bytes, but only ${bytes.length - dataStart} follow`,
      );
    }
    const data = bytes.subarray(dataStart, dataStart + size);
    const next = dataStart + Math.ceil(size / BLOCK) * BLOCK;
    if (type === "L" || type === "x" || type === "g") {
      if (size > MAX_EXTENDED_HEADER) throw new TarError(`the extended header at byte ${offset} is too large`);
      if (type === "L") longName = ascii(data);
      else if (type === "x") pax = paxRecords(data, offset);
      offset = next;
      continue;
    }
    const magic = Buffer.from(header.subarray(257, 262)).toString("latin1");
    const prefix = magic === "ustar" ? ascii(header.subarray(345, 500)) : "";
    const stored = ascii(header.subarray(0, 100));
    const name = pax?.get("path") ?? longName ?? (prefix ? `${prefix}/${stored}` : stored);
    const kind = type === "0" || type === "\0" || type === "7" ? "file" : type === "5" ? "directory" : "other";
    members.push({ name: name.replace(/^(\.\/)+/, ""), kind, data });
    longName = undefined;
    pax = undefined;
    offset = next;
  }
}

/** Whether a member name could reach outside the folder it would be unpacked into. */
export function isUnsafeName(name: string): boolean {
  return name.startsWith("/") || /^[a-zA-Z]:/.test(name) || name.split(/[/\\]/).includes("..");
}
