/**
 * JSON strings found, checked, escaped and unescaped where they lie in a Buffer, for documents too large
 * to copy: a stored request's envelope holds the body as one JSON string, and the CloudEvent carries the
 * envelope as one JSON string again. JSON.parse and JSON.stringify work on JS strings only, so for a 6 MB
 * body they need the whole document as a string, the parsed body as another, and the bytes again: three
 * copies on the V8 heap per request. Here a string's bytes are used in place (a view) when it has no
 * escape, and copied once when it has.
 *
 * These agree with JSON.parse and JSON.stringify for valid UTF-8 (the tests compare them); bytes that
 * are not UTF-8 are carried through as they are, where a JS string would have made them U+FFFD.
 */

/**
 * From this size up, documents held as Buffers are read in place; smaller ones through JSON.parse, which
 * is faster for them and copies little.
 */
export const IN_PLACE_MIN_BYTES = 64 * 1024;

/** A JSON string's contents in a Buffer, escapes and all: `buf[start, end)`, the quotes outside it. */
export interface StringSpan {
  readonly start: number;
  readonly end: number;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const COMMA = 0x2c;
const COLON = 0x3a;

/** Extra bytes a byte takes inside a JSON string: `"` and `\` one, `\n` one, other controls five (`\u0001`). */
const EXTRA = new Uint8Array(256);
/** The letter after the backslash that JSON.stringify writes for a byte; 0 where it writes `\u00XX`. */
const ESCAPE_LETTER = new Uint8Array(256);
for (const [byte, letter] of [
  [8, "b"],
  [9, "t"],
  [10, "n"],
  [12, "f"],
  [13, "r"],
  [QUOTE, '"'],
  [BACKSLASH, "\\"],
] as const) {
  ESCAPE_LETTER[byte] = letter.charCodeAt(0);
}
for (let byte = 0; byte < 0x20; byte++) EXTRA[byte] = ESCAPE_LETTER[byte] === 0 ? 5 : 1;
EXTRA[QUOTE] = 1;
EXTRA[BACKSLASH] = 1;

/** Bytes that end a plain run inside a JSON string: the quote, a backslash, or a control character. */
const SPECIAL = new Uint8Array(256);
for (let byte = 0; byte < 0x20; byte++) SPECIAL[byte] = 1;
SPECIAL[QUOTE] = 1;
SPECIAL[BACKSLASH] = 1;

/** What a one-letter escape stands for, by its letter; 0 for a letter that is no escape. */
const UNESCAPED = new Uint8Array(256);
for (let byte = 0; byte < 256; byte++)
  if (ESCAPE_LETTER[byte] !== 0) UNESCAPED[ESCAPE_LETTER[byte] as number] = byte;
UNESCAPED[0x2f] = 0x2f;

const HEX = new Int8Array(256).fill(-1);
for (let digit = 0; digit < 16; digit++) {
  HEX[digit.toString(16).charCodeAt(0)] = digit;
  HEX[digit.toString(16).toUpperCase().charCodeAt(0)] = digit;
}
/** The lower-case hex digits JSON.stringify writes in `\u00XX`. */
const HEX_DIGITS = Buffer.from("0123456789abcdef");

/** Bytes `value` takes as a JSON string, its quotes included (JSON.stringify's length, in UTF-8). */
export function jsonStringLength(value: Buffer): number {
  let length = value.length + 2;
  for (let i = 0; i < value.length; i++) length += EXTRA[value[i] as number] as number;
  return length;
}

/** Writes `value` as a JSON string, quotes included, into `out` at `at`; returns where it ends. */
export function writeJsonString(value: Buffer, out: Buffer, at: number): number {
  let to = at;
  out[to++] = QUOTE;
  let run = 0;
  for (let i = 0; i < value.length; i++) {
    const byte = value[i] as number;
    if (EXTRA[byte] === 0) continue;
    to = copyRun(value, run, i, out, to);
    run = i + 1;
    out[to++] = BACKSLASH;
    const letter = ESCAPE_LETTER[byte] as number;
    if (letter !== 0) out[to++] = letter;
    else {
      out[to++] = 0x75;
      out[to++] = 0x30;
      out[to++] = 0x30;
      out[to++] = HEX_DIGITS[byte >> 4] as number;
      out[to++] = HEX_DIGITS[byte & 15] as number;
    }
  }
  to = copyRun(value, run, value.length, out, to);
  out[to++] = QUOTE;
  return to;
}

/**
 * Copies `from[start, end)` into `out` at `to`; returns where it ends. Short runs byte by byte: between
 * dense escapes a native copy per run would cost more than the bytes it moves.
 */
function copyRun(from: Buffer, start: number, end: number, out: Buffer, to: number): number {
  if (end - start > 32) return to + from.copy(out, to, start, end);
  let at = to;
  for (let i = start; i < end; i++) out[at++] = from[i] as number;
  return at;
}

/**
 * Where the JSON string that opens with the quote at `open` ends: the index after its closing quote,
 * or -1 when it is not a valid JSON string (a raw control character, a bad escape, no closing quote).
 */
export function skipJsonString(buf: Buffer, open: number): number {
  const length = buf.length;
  let i = open + 1;
  for (;;) {
    while (i < length && SPECIAL[buf[i] as number] === 0) i++;
    if (i >= length) return -1;
    const byte = buf[i] as number;
    if (byte === QUOTE) return i + 1;
    if (byte !== BACKSLASH) return -1;
    const letter = buf[i + 1] as number;
    if (letter === 0x75) {
      if (i + 5 >= length) return -1;
      for (let h = 2; h < 6; h++) if (HEX[buf[i + h] as number] === -1) return -1;
      i += 6;
    } else if (i + 1 < length && UNESCAPED[letter] !== 0) i += 2;
    else return -1;
  }
}

/**
 * The bytes a JSON string stands for, given its span: a view of the same bytes when it has no escape
 * (no copy), else a new Buffer. The span must have passed skipJsonString. A lone surrogate becomes
 * U+FFFD, as JSON.parse and then Buffer.from would make it.
 */
export function unescapeJsonString(buf: Buffer, span: StringSpan): Buffer {
  const first = buf.indexOf(BACKSLASH, span.start);
  if (first < 0 || first >= span.end) return buf.subarray(span.start, span.end);
  // An escape never stands for more bytes than it takes, so the escaped length is enough room.
  const out = Buffer.allocUnsafe(span.end - span.start);
  let to = buf.copy(out, 0, span.start, first);
  let run = first;
  let i = first;
  while (i < span.end) {
    if (buf[i] !== BACKSLASH) {
      i++;
      continue;
    }
    to = copyRun(buf, run, i, out, to);
    const letter = buf[i + 1] as number;
    if (letter !== 0x75) {
      out[to++] = UNESCAPED[letter] as number;
      i += 2;
    } else {
      let unit = hex4(buf, i + 2);
      i += 6;
      if (unit >= 0xd800 && unit <= 0xdbff && buf[i] === BACKSLASH && buf[i + 1] === 0x75) {
        const low = hex4(buf, i + 2);
        if (low >= 0xdc00 && low <= 0xdfff) {
          unit = 0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00);
          i += 6;
        }
      }
      to += writeCodePoint(out, to, unit);
    }
    run = i;
  }
  to = copyRun(buf, run, span.end, out, to);
  return out.subarray(0, to);
}

function hex4(buf: Buffer, at: number): number {
  return (
    ((HEX[buf[at] as number] as number) << 12) |
    ((HEX[buf[at + 1] as number] as number) << 8) |
    ((HEX[buf[at + 2] as number] as number) << 4) |
    (HEX[buf[at + 3] as number] as number)
  );
}

/** UTF-8 of one code point (a lone surrogate as U+FFFD); returns the bytes written. */
function writeCodePoint(out: Buffer, at: number, code: number): number {
  if (code < 0x80) {
    out[at] = code;
    return 1;
  }
  if (code < 0x800) {
    out[at] = 0xc0 | (code >> 6);
    out[at + 1] = 0x80 | (code & 0x3f);
    return 2;
  }
  if (code >= 0xd800 && code <= 0xdfff) return writeCodePoint(out, at, 0xfffd);
  if (code < 0x10000) {
    out[at] = 0xe0 | (code >> 12);
    out[at + 1] = 0x80 | ((code >> 6) & 0x3f);
    out[at + 2] = 0x80 | (code & 0x3f);
    return 3;
  }
  out[at] = 0xf0 | (code >> 18);
  out[at + 1] = 0x80 | ((code >> 12) & 0x3f);
  out[at + 2] = 0x80 | ((code >> 6) & 0x3f);
  out[at + 3] = 0x80 | (code & 0x3f);
  return 4;
}

/** The index of the first byte at or after `at` that is not JSON whitespace (`buf.length` when none). */
export function skipSpace(buf: Buffer, at: number): number {
  let i = at;
  while (i < buf.length) {
    const byte = buf[i];
    if (byte !== 0x20 && byte !== 0x0a && byte !== 0x0d && byte !== 0x09) return i;
    i++;
  }
  return i;
}

/**
 * The span of the string value of the last top-level member `name` of the JSON object in `buf` (the
 * one JSON.parse keeps); undefined when `buf` is not an object, has no such member, or its value is not
 * a valid string. Only the structure is followed: the other members are checked by whoever parses them.
 */
export function stringMemberSpan(buf: Buffer, name: string): StringSpan | undefined {
  let i = skipSpace(buf, 0);
  if (buf[i] !== OPEN_BRACE) return undefined;
  let found: StringSpan | undefined;
  i = skipSpace(buf, i + 1);
  if (buf[i] === CLOSE_BRACE) return undefined;
  for (;;) {
    if (buf[i] !== QUOTE) return undefined;
    const keyEnd = skipJsonString(buf, i);
    if (keyEnd < 0) return undefined;
    const key = unescapeJsonString(buf, { start: i + 1, end: keyEnd - 1 });
    i = skipSpace(buf, keyEnd);
    if (buf[i] !== COLON) return undefined;
    i = skipSpace(buf, i + 1);
    const valueEnd = skipValue(buf, i);
    if (valueEnd < 0) return undefined;
    if (key.length === Buffer.byteLength(name) && key.toString() === name) {
      found = buf[i] === QUOTE ? { start: i + 1, end: valueEnd - 1 } : undefined;
    }
    i = skipSpace(buf, valueEnd);
    if (buf[i] === CLOSE_BRACE) return found;
    if (buf[i] !== COMMA) return undefined;
    i = skipSpace(buf, i + 1);
  }
}

/**
 * The spans of the elements of `buf` when it is exactly a JSON array of strings (whitespace aside);
 * undefined otherwise.
 */
export function stringArraySpans(buf: Buffer): StringSpan[] | undefined {
  let i = skipSpace(buf, 0);
  if (buf[i] !== OPEN_BRACKET) return undefined;
  const spans: StringSpan[] = [];
  i = skipSpace(buf, i + 1);
  if (buf[i] !== CLOSE_BRACKET) {
    for (;;) {
      if (buf[i] !== QUOTE) return undefined;
      const end = skipJsonString(buf, i);
      if (end < 0) return undefined;
      spans.push({ start: i + 1, end: end - 1 });
      i = skipSpace(buf, end);
      if (buf[i] === CLOSE_BRACKET) break;
      if (buf[i] !== COMMA) return undefined;
      i = skipSpace(buf, i + 1);
    }
  }
  return skipSpace(buf, i + 1) === buf.length ? spans : undefined;
}

/** Where the JSON value that starts at `at` ends (its structure only); -1 when it visibly does not. */
function skipValue(buf: Buffer, at: number): number {
  const first = buf[at];
  if (first === QUOTE) return skipJsonString(buf, at);
  if (first === OPEN_BRACE || first === OPEN_BRACKET) {
    let depth = 0;
    for (let i = at; i < buf.length; i++) {
      const byte = buf[i];
      if (byte === QUOTE) {
        const end = skipJsonString(buf, i);
        if (end < 0) return -1;
        i = end - 1;
      } else if (byte === OPEN_BRACE || byte === OPEN_BRACKET) depth++;
      else if ((byte === CLOSE_BRACE || byte === CLOSE_BRACKET) && --depth === 0) return i + 1;
    }
    return -1;
  }
  // A number, true, false or null: up to the next delimiter.
  let i = at;
  while (i < buf.length) {
    const byte = buf[i];
    if (byte === COMMA || byte === CLOSE_BRACE || byte === CLOSE_BRACKET || byte === 0x20) break;
    if (byte === 0x0a || byte === 0x0d || byte === 0x09) break;
    i++;
  }
  return i === at ? -1 : i;
}
