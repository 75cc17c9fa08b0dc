/**
 * CLIP's byte-level BPE tokenizer, as transformers' slow `CLIPTokenizer` runs it when `ftfy`
 * is not installed (the usual diffusers install, and what the golden `tokenizer_ids.json`
 * records): BERT's BasicTokenizer cleans the text, CLIP's regex cuts it into words, each word
 * becomes byte symbols and is merged by BPE into tokens ending in `</w>`.
 *
 * Unicode tables come from the JS runtime. The reference ran on Python 3.11 (Unicode 14), whose
 * cleanup drops characters it sees as unassigned, so characters added to Unicode after 14.0
 * (newer emoji, for instance) are dropped there and tokenized here; everything older matches.
 */
import { readFile } from "node:fs/promises";
import path from "node:path";
import { ModelError } from "../errors.js";
import { parseJsonObject } from "../json.js";

export interface Encoding {
  /** `<|startoftext|>`, the text's tokens, `<|endoftext|>`, then padding. */
  inputIds: number[];
  /** 1 for real tokens (bos and eos included), 0 for padding. */
  attentionMask: number[];
}

export interface EncodeOptions {
  /** Length to pad and truncate to, bos and eos included. Default: the folder's `model_max_length`. */
  maxLength?: number;
  /** Pad with the pad token up to `maxLength`. Default true. */
  padding?: boolean;
  /** Keep bos, the first `maxLength - 2` tokens and eos. Default true. */
  truncation?: boolean;
}

const BOS_DEFAULT = "<|startoftext|>";
const EOS_DEFAULT = "<|endoftext|>";

/**
 * CLIP's text encoder has 77 positions. Used when tokenizer_config.json gives no usable
 * `model_max_length` (transformers would then neither pad nor truncate, which no CLIP text
 * encoder can take).
 */
const DEFAULT_MAX_LENGTH = 77;
/** transformers writes int(1e30) for "no limit"; anything this large is not a real length. */
const NO_LIMIT = 1e20;

/**
 * OpenAI's vocabulary is 49,152 BPE entries minus the 256 byte symbols and 2 special tokens;
 * transformers reads only that many merges even when merges.txt has more.
 */
const MAX_MERGES = 49152 - 256 - 2;

/**
 * The BPE cache's budget, counted in bytes of its keys and tokens (plus a per-entry overhead),
 * not in entries: a server fed arbitrary prompts cannot grow it past this however long the
 * words. A few thousand ordinary words fill a fraction of it.
 */
export const BPE_CACHE_BYTES = 2 * 1024 * 1024;
/** Rough cost of one cached word beyond its characters: the Map entry, the array, string headers. */
const ENTRY_OVERHEAD_BYTES = 96;

/**
 * BPE is quadratic in a word's length (every merge rescans the word), and transformers runs it
 * over whole words however long: one 64k-letter word took seconds. A longer word is merged in
 * pieces of this many byte symbols, only the last ending in `</w>`. No real word comes near it
 * (the longest in the golden prompts is 120 bytes), so their tokens are exactly transformers';
 * only such runs of hundreds of letters or symbols may split differently.
 */
export const MAX_BPE_WORD = 256;

/** The order in which transformers registers special tokens; it decides ids for new ones. */
const SPECIAL_TOKEN_KEYS = [
  "bos_token",
  "eos_token",
  "unk_token",
  "sep_token",
  "pad_token",
  "cls_token",
  "mask_token",
] as const;
type SpecialTokenKey = (typeof SPECIAL_TOKEN_KEYS)[number];

/** An added token and how it treats the whitespace around it (transformers' `AddedToken`). */
interface AddedToken {
  content: string;
  lstrip: boolean;
  rstrip: boolean;
  singleWord: boolean;
}

// BasicTokenizer: control and format characters (category C*, which also covers unassigned and
// lone surrogates), NUL and U+FFFD go; tab, newline, CR and every Zs space become a plain space.
const DROPPED = /(?![\t\n\r])[\p{C}\uFFFD]/gu;
const SPACE_LIKE = /[\t\n\r\p{Zs}]/gu;
// BERT's "Chinese character" blocks get a space on each side, so each ideograph is its own word.
const CJK_IDEOGRAPH =
  /[\u3400-\u4DBF\u4E00-\u9FFF\uF900-\uFAFF\u{20000}-\u{2A6DF}\u{2A700}-\u{2CEAF}\u{2F800}-\u{2FA1F}]/gu;
// Python's str.split()/strip() whitespace (str.isspace), wider than JS's \s on C0 separators.
const PY_WHITESPACE = "\\t-\\r\\x1C-\\x20\\x85\\xA0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000";
const PY_WHITESPACE_RUN = new RegExp(`[${PY_WHITESPACE}]+`, "u");
const PY_LEADING_WHITESPACE = new RegExp(`^[${PY_WHITESPACE}]+`, "u");
const PY_TRAILING_WHITESPACE = new RegExp(`[${PY_WHITESPACE}]+$`, "u");
const pyLstrip = (s: string): string => s.replace(PY_LEADING_WHITESPACE, "");
const pyRstrip = (s: string): string => s.replace(PY_TRAILING_WHITESPACE, "");
const pyStrip = (s: string): string => pyLstrip(pyRstrip(s));
/** Two byte-symbol strings and one space: Python's split() gives exactly these two halves. */
const PLAIN_MERGE_LINE = /^[!-~\xA1-\xAC\xAE-\u0143]+ [!-~\xA1-\xAC\xAE-\u0143]+$/;

// CLIP's word pattern: specials, English contractions, letter runs, single digits, runs of
// anything else. The original is compiled with Python `regex` and IGNORECASE, on text that is
// already lower-case, where the flag still matters for two characters (found by comparing
// every code point): long s "ſ" matches the "s" of "'s" and of "<|startoftext|>", and U+0345
// (combining ypogegrammeni, case partner of iota) matches neither [\p{L}] nor
// [^\s\p{L}\p{N}], so it silently vanishes. JS's /i would count U+0345 as a letter instead,
// hence no /i and both cases spelt out.
const WORD_PATTERN =
  /<\|[sſ]tartoftext\|>|<\|endoftext\|>|'[sſ]|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|(?:(?!\u0345)[^\s\p{L}\p{N}])+/gu;

/**
 * GPT-2/CLIP's reversible byte → symbol table: printable Latin-1 bytes stand for themselves,
 * the rest are moved to U+0100 and up, so no BPE symbol is a space or a control character.
 */
function byteSymbolTable(): string[] {
  const table: string[] = [];
  let shifted = 256;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    table.push(String.fromCharCode(printable ? b : shifted++));
  }
  return table;
}
const BYTE_SYMBOLS = byteSymbolTable();
const utf8 = new TextEncoder();

/** BasicTokenizer(do_lower_case, no accent stripping, no punctuation split), joined by spaces. */
function basicClean(text: string): string {
  const cleaned = text.replace(DROPPED, "").replace(SPACE_LIKE, " ").replace(CJK_IDEOGRAPH, " $& ").normalize("NFC");
  const words: string[] = [];
  // Lower-cased word by word, as Python does: final-sigma context stops at word boundaries.
  for (const word of cleaned.split(PY_WHITESPACE_RUN)) if (word !== "") words.push(word.toLowerCase());
  return words.join(" ");
}

/** BPE results by word, bounded by bytes; the least recently used entries go first. */
class BpeCache {
  private readonly map = new Map<string, { parts: string[]; bytes: number }>();
  private used = 0;
  constructor(private readonly limitBytes: number) {}

  /** Bytes held now (UTF-16 characters at 2 bytes, plus each entry's overhead). */
  get bytes(): number {
    return this.used;
  }

  get(key: string): string[] | undefined {
    const entry = this.map.get(key);
    if (entry !== undefined) {
      this.map.delete(key);
      this.map.set(key, entry);
    }
    return entry?.parts;
  }

  set(key: string, parts: string[]): void {
    let bytes = ENTRY_OVERHEAD_BYTES + 2 * key.length;
    for (const part of parts) bytes += 16 + 2 * part.length;
    if (bytes > this.limitBytes) return;
    const old = this.map.get(key);
    if (old) {
      this.map.delete(key);
      this.used -= old.bytes;
    }
    this.map.set(key, { parts, bytes });
    this.used += bytes;
    for (const [oldest, entry] of this.map) {
      if (this.used <= this.limitBytes) break;
      this.map.delete(oldest);
      this.used -= entry.bytes;
    }
  }
}

async function readTextFile(file: string, required: boolean): Promise<string | undefined> {
  try {
    return await readFile(file, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT" && !required) return undefined;
    const reason = code === "ENOENT" ? "file not found" : `cannot be read (${(err as Error).message})`;
    throw new ModelError(`tokenizer ${reason}`, { file });
  }
}

/** A special-token entry: a plain string, an AddedToken object, or null (none). */
function parseAddedToken(value: unknown, file: string, field: string): AddedToken | null {
  if (value === null || value === undefined) return null;
  if (typeof value === "string") return { content: value, lstrip: false, rstrip: false, singleWord: false };
  if (typeof value === "object" && !Array.isArray(value)) {
    const o = value as Record<string, unknown>;
    if (typeof o.content === "string") {
      return {
        content: o.content,
        lstrip: o.lstrip === true,
        rstrip: o.rstrip === true,
        singleWord: o.single_word === true,
      };
    }
  }
  throw new ModelError("expected a token string or an object with a string `content`", { file, field });
}

function parseAddedTokenList(value: unknown, file: string, field: string): AddedToken[] {
  if (value === null || value === undefined) return [];
  if (!Array.isArray(value)) throw new ModelError("expected a list of tokens", { file, field });
  return value.flatMap((v, i) => parseAddedToken(v, file, `${field}[${i}]`) ?? []);
}

/**
 * vocab.json as parsed, looked up in place: copying 49,408 entries into a Map would cost more
 * than the parse itself. The prototype is dropped so no inherited name ("constructor") is a
 * token, and ids are checked when read.
 */
class Vocabulary {
  private readonly ids: Record<string, unknown>;
  constructor(
    parsed: Record<string, unknown>,
    private readonly file: string,
  ) {
    this.ids = Object.setPrototypeOf(parsed, null) as Record<string, unknown>;
  }

  get(token: string): number | undefined {
    const id = this.ids[token];
    if (id === undefined) return undefined;
    if (!Number.isInteger(id)) throw new ModelError("token id is not an integer", { file: this.file, field: token });
    return id as number;
  }

  get size(): number {
    return Object.keys(this.ids).length;
  }
}

/**
 * Merge ranks by "left right" (BPE symbols never hold a space). transformers reads
 * `text.strip().split("\n")[1:]`: the first line is the "#version" header, and each line
 * keeps its position as rank, so a repeated merge takes the later rank.
 */
function parseMerges(text: string): Map<string, number> {
  const ranks = new Map<string, number>();
  const lines = pyStrip(text).split("\n");
  const end = Math.min(lines.length, MAX_MERGES + 1);
  for (let i = 1; i < end; i++) {
    const line = lines[i] as string;
    // Nearly every line is exactly "left right"; only the others need Python's split().
    if (PLAIN_MERGE_LINE.test(line)) {
      ranks.set(line, i - 1);
    } else {
      const pair = pyStrip(line).split(PY_WHITESPACE_RUN);
      if (pair.length === 2) ranks.set(`${pair[0]} ${pair[1]}`, i - 1);
    }
  }
  return ranks;
}

interface TokenizerParts {
  vocab: Vocabulary;
  ranks: Map<string, number>;
  addedIds: Map<string, number>;
  addedTokens: Map<string, AddedToken>;
  special: Record<SpecialTokenKey, AddedToken | null>;
  modelMaxLength: number;
  folder: string;
}

export class ClipTokenizer {
  readonly modelMaxLength: number;
  readonly bosTokenId: number;
  readonly eosTokenId: number;
  readonly padTokenId: number;
  private readonly unkTokenId: number | undefined;
  private readonly vocab: Vocabulary;
  /** Merge rank by "left right" (BPE symbols never hold a space). */
  private readonly ranks: Map<string, number>;
  /** Tokens cut out of the text before any cleanup (specials and added tokens) and their ids. */
  private readonly addedIds: Map<string, number>;
  private readonly addedTokens: Map<string, AddedToken>;
  /** Added tokens by first UTF-16 unit, longest first, so the leftmost-longest match wins. */
  private readonly addedByFirstUnit: Map<number, string[]>;
  private readonly bpeCache = new BpeCache(BPE_CACHE_BYTES);

  private constructor(parts: TokenizerParts) {
    this.vocab = parts.vocab;
    this.ranks = parts.ranks;
    this.addedIds = parts.addedIds;
    this.addedTokens = parts.addedTokens;
    this.modelMaxLength = parts.modelMaxLength;

    const idOfSpecial = (key: SpecialTokenKey): number | undefined => {
      const token = parts.special[key];
      return token ? this.idOf(token.content) : undefined;
    };
    this.unkTokenId = idOfSpecial("unk_token");
    const required = (key: SpecialTokenKey): number => {
      const id = idOfSpecial(key);
      if (id === undefined) {
        throw new ModelError("CLIP needs this token, but the folder sets it to null", {
          file: path.join(parts.folder, "tokenizer_config.json"),
          field: key,
        });
      }
      return id;
    };
    this.bosTokenId = required("bos_token");
    this.eosTokenId = required("eos_token");
    this.padTokenId = required("pad_token");

    this.addedByFirstUnit = new Map();
    for (const content of this.addedIds.keys()) {
      if (content === "") continue;
      const unit = content.charCodeAt(0);
      const list = this.addedByFirstUnit.get(unit) ?? [];
      list.push(content);
      this.addedByFirstUnit.set(unit, list);
    }
    for (const list of this.addedByFirstUnit.values()) list.sort((a, b) => b.length - a.length);
  }

  /**
   * Loads a diffusers `tokenizer/` folder: vocab.json, merges.txt and the two optional configs;
   * `vocabDir`, when given, is where vocab.json and merges.txt are instead.
   */
  static async fromFolder(dir: string, vocabDir = dir): Promise<ClipTokenizer> {
    const files = {
      vocab: path.join(vocabDir, "vocab.json"),
      merges: path.join(vocabDir, "merges.txt"),
      config: path.join(dir, "tokenizer_config.json"),
      specialMap: path.join(dir, "special_tokens_map.json"),
    };
    const [vocabText, mergesText, configText, specialMapText] = await Promise.all([
      readTextFile(files.vocab, true),
      readTextFile(files.merges, true),
      readTextFile(files.config, false),
      readTextFile(files.specialMap, false),
    ]);

    const vocab = new Vocabulary(parseJsonObject(vocabText ?? "", files.vocab), files.vocab);
    const ranks = parseMerges(mergesText ?? "");

    const config = configText === undefined ? {} : parseJsonObject(configText, files.config);
    const specialMap = specialMapText === undefined ? {} : parseJsonObject(specialMapText, files.specialMap);
    const { special, additional, addedIds, addedTokens } = resolveSpecialTokens(config, specialMap, files);

    // Special tokens not yet known as added tokens are registered in transformers' order; one
    // missing from the vocabulary gets the next free id, counting vocabulary and added tokens.
    let nextId: number | undefined;
    const freeId = (): number => {
      nextId ??= vocab.size + [...addedIds.keys()].filter((content) => vocab.get(content) === undefined).length;
      return nextId++;
    };
    const seen = new Set<string>();
    const specials = [...SPECIAL_TOKEN_KEYS.map((k) => special[k]), ...additional];
    for (const token of specials) {
      if (!token || token.content === "" || seen.has(token.content)) continue;
      seen.add(token.content);
      if (addedIds.has(token.content)) continue;
      addedIds.set(token.content, vocab.get(token.content) ?? freeId());
      addedTokens.set(token.content, token);
    }

    const rawMax = config.model_max_length;
    const modelMaxLength =
      typeof rawMax === "number" && Number.isInteger(rawMax) && rawMax >= 2 && rawMax < NO_LIMIT
        ? rawMax
        : DEFAULT_MAX_LENGTH;

    return new ClipTokenizer({ vocab, ranks, addedIds, addedTokens, special, modelMaxLength, folder: dir });
  }

  /**
   * The token strings of `text`, without bos and eos. With `limit`, tokenizing stops once that
   * many tokens are had (the first `limit` are the same either way): truncation's budget, so a
   * long prompt costs no more than its first words.
   */
  tokenize(text: string, limit = Number.POSITIVE_INFINITY): string[] {
    const tokens: string[] = [];
    for (const piece of this.splitOnAddedTokens(text)) {
      if (tokens.length >= limit) break;
      if (this.addedIds.has(piece)) {
        tokens.push(piece);
        continue;
      }
      for (const match of basicClean(piece).matchAll(WORD_PATTERN)) {
        let symbols = "";
        for (const byte of utf8.encode(match[0])) symbols += BYTE_SYMBOLS[byte];
        for (let start = 0; start < symbols.length && tokens.length < limit; start += MAX_BPE_WORD) {
          const end = start + MAX_BPE_WORD >= symbols.length;
          for (const token of this.bpe(symbols.slice(start, start + MAX_BPE_WORD), end)) tokens.push(token);
        }
        if (tokens.length >= limit) break;
      }
    }
    return tokens.length > limit ? tokens.slice(0, limit) : tokens;
  }

  /** Bytes the BPE cache holds now (at most BPE_CACHE_BYTES). */
  get bpeCacheBytes(): number {
    return this.bpeCache.bytes;
  }

  encode(text: string, opts: EncodeOptions = {}): Encoding {
    const maxLength = opts.maxLength ?? this.modelMaxLength;
    const padding = opts.padding ?? true;
    const truncation = opts.truncation ?? true;
    if (!Number.isInteger(maxLength) || maxLength < 2) {
      throw new RangeError(`maxLength must be an integer of at least 2 (bos and eos), got ${maxLength}`);
    }

    let ids = this.tokenize(text, truncation ? maxLength - 2 : undefined).map((token) => this.idOf(token));
    if (truncation && ids.length + 2 > maxLength) ids = ids.slice(0, maxLength - 2);
    const inputIds = [this.bosTokenId, ...ids, this.eosTokenId];
    const attentionMask = inputIds.map(() => 1);
    if (padding) {
      while (inputIds.length < maxLength) {
        inputIds.push(this.padTokenId);
        attentionMask.push(0);
      }
    }
    return { inputIds, attentionMask };
  }

  /** Added tokens first (they may shadow vocabulary entries), then the vocabulary, then unk. */
  private idOf(token: string): number {
    const id = this.addedIds.get(token) ?? this.vocab.get(token) ?? this.unkTokenId;
    if (id === undefined)
      throw new ModelError(`token ${JSON.stringify(token)} is not in the vocabulary and there is no unk_token`);
    return id;
  }

  /**
   * Cuts added tokens out of the raw text (leftmost, longest first), then applies their
   * lstrip/rstrip/single_word rules to the neighbouring pieces the way transformers'
   * `tokenize` does. A piece equal to an added token is that token; the rest is text.
   * transformers' trie agrees for tokens that are prefixes of each other (textual-inversion
   * "<t>", "<t>_1"); where one token begins inside another's partial match its lookahead can
   * cut the text oddly, and that quirk is not reproduced.
   */
  private splitOnAddedTokens(text: string): string[] {
    const pieces: string[] = [];
    let textStart = 0;
    let i = 0;
    while (i < text.length) {
      const candidates = this.addedByFirstUnit.get(text.charCodeAt(i));
      const match = candidates?.find((c) => text.startsWith(c, i));
      if (match === undefined) {
        i++;
        continue;
      }
      if (i > textStart) pieces.push(text.slice(textStart, i));
      pieces.push(match);
      i += match.length;
      textStart = i;
    }
    if (textStart < text.length) pieces.push(text.slice(textStart));

    for (let k = 0; k < pieces.length; k++) {
      const piece = pieces[k] as string;
      const token = this.addedTokens.get(piece);
      if (!token || !this.addedIds.has(piece)) continue;
      // Like transformers, the conditions look at the neighbours as they were before stripping.
      const left = k > 0 ? (pieces[k - 1] as string) : "";
      const right = k + 1 < pieces.length ? (pieces[k + 1] as string) : "";
      if (token.rstrip && right) pieces[k + 1] = pyLstrip(right);
      if (token.lstrip && left) pieces[k - 1] = pyRstrip(left);
      if (token.singleWord && left && !left.endsWith(" ")) {
        pieces[k - 1] += piece;
        pieces[k] = "";
      } else if (token.singleWord && right && !right.startsWith(" ")) {
        pieces[k + 1] = piece + pieces[k + 1];
        pieces[k] = "";
      }
    }
    return pieces.filter((p) => p !== "");
  }

  /**
   * BPE over one word's byte symbols (or a piece of a long word, `endOfWord` false but for the
   * last): repeatedly merge the adjacent pair of lowest rank.
   */
  private bpe(word: string, endOfWord = true): string[] {
    // transformers seeds its cache with these, so the pattern's own special-token branch
    // (reached by text such as "<|END\u200BOFTEXT|>" after cleanup) maps to the special token.
    if (word === BOS_DEFAULT || word === EOS_DEFAULT) return [word];
    // A piece inside a word is cached under a key no whole word has: BPE symbols never hold a space.
    const key = endOfWord ? word : `${word} `;
    const cached = this.bpeCache.get(key);
    if (cached) return cached;

    // Byte symbols are all below U+0200, so one UTF-16 unit each.
    let parts = word.split("");
    if (endOfWord) parts[parts.length - 1] += "</w>";
    while (parts.length > 1) {
      let best = Number.POSITIVE_INFINITY;
      let bestLeft = "";
      let bestRight = "";
      for (let j = 0; j + 1 < parts.length; j++) {
        const rank = this.ranks.get(`${parts[j]} ${parts[j + 1]}`);
        if (rank !== undefined && rank < best) {
          best = rank;
          bestLeft = parts[j] as string;
          bestRight = parts[j + 1] as string;
        }
      }
      if (best === Number.POSITIVE_INFINITY) break;
      const merged: string[] = [];
      for (let j = 0; j < parts.length; j++) {
        if (parts[j] === bestLeft && parts[j + 1] === bestRight && j + 1 < parts.length) {
          merged.push(bestLeft + bestRight);
          j++;
        } else {
          merged.push(parts[j] as string);
        }
      }
      parts = merged;
    }
    this.bpeCache.set(key, parts);
    return parts;
  }
}

/**
 * Which special tokens the folder declares, following transformers' `from_pretrained`:
 * tokenizer_config.json gives the values; special_tokens_map.json overrides them (SD 2.x:
 * pad "<|endoftext|>" in the config, "!" in the map, so "!" it is), except when the config
 * has `added_tokens_decoder`, whose presence makes transformers skip the map altogether.
 */
function resolveSpecialTokens(
  config: Record<string, unknown>,
  specialMap: Record<string, unknown>,
  files: { config: string; specialMap: string },
): {
  special: Record<SpecialTokenKey, AddedToken | null>;
  additional: AddedToken[];
  addedIds: Map<string, number>;
  addedTokens: Map<string, AddedToken>;
} {
  const special: Record<SpecialTokenKey, AddedToken | null> = {
    bos_token: parseAddedToken(BOS_DEFAULT, files.config, "bos_token"),
    eos_token: parseAddedToken(EOS_DEFAULT, files.config, "eos_token"),
    unk_token: parseAddedToken(EOS_DEFAULT, files.config, "unk_token"),
    sep_token: null,
    pad_token: parseAddedToken(EOS_DEFAULT, files.config, "pad_token"),
    cls_token: null,
    mask_token: null,
  };
  for (const key of SPECIAL_TOKEN_KEYS) {
    if (key in config) special[key] = parseAddedToken(config[key], files.config, key);
  }
  const additional = parseAddedTokenList(config.additional_special_tokens, files.config, "additional_special_tokens");

  const addedIds = new Map<string, number>();
  const addedTokens = new Map<string, AddedToken>();
  const decoder = config.added_tokens_decoder;
  if (decoder !== undefined && decoder !== null) {
    if (typeof decoder !== "object" || Array.isArray(decoder)) {
      throw new ModelError("expected an object of id → token", { file: files.config, field: "added_tokens_decoder" });
    }
    for (const [idText, value] of Object.entries(decoder)) {
      const field = `added_tokens_decoder.${idText}`;
      const id = Number(idText);
      if (!Number.isInteger(id) || id < 0) throw new ModelError("key is not a token id", { file: files.config, field });
      const token = parseAddedToken(value, files.config, field);
      if (!token) continue;
      addedIds.set(token.content, id);
      addedTokens.set(token.content, token);
    }
    // A special token named by string takes its whitespace rules from the decoder's entry.
    for (const key of SPECIAL_TOKEN_KEYS) {
      const token = special[key];
      if (token) special[key] = addedTokens.get(token.content) ?? token;
    }
  } else {
    for (const key of SPECIAL_TOKEN_KEYS) {
      if (key in specialMap) special[key] = parseAddedToken(specialMap[key], files.specialMap, key);
    }
    const extra = parseAddedTokenList(
      specialMap.additional_special_tokens,
      files.specialMap,
      "additional_special_tokens",
    );
    for (const token of extra) if (!additional.some((t) => t.content === token.content)) additional.push(token);
  }
  return { special, additional, addedIds, addedTokens };
}
