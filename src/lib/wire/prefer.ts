/**
 * The one reader of RFC 7240's `Prefer` header, for the producer, the dev gateway and whatever comes next.
 *
 * `Prefer` may repeat, and each value holds comma-separated preferences: `token [= value] *( ; param )`.
 * Values and parameters may be quoted strings, which may contain commas, semicolons and escaped quotes.
 * Tokens are case-insensitive (RFC 7240 section 2); a token given twice counts the first time only.
 */
import { RESPOND_ASYNC } from "./headers.js";

export interface Preference {
  /** Lower-case token, e.g. `respond-async`, `wait`, `handling`. */
  readonly name: string;
  /** The value after `=`, unquoted; `""` when there is none. */
  readonly value: string;
  /** Parameters after `;`, names lower-case, values unquoted. */
  readonly params: Readonly<Record<string, string>>;
}

/** Every preference in the header's values, in order, the first of each token kept. */
export function parsePrefer(values: readonly string[] | string | undefined): Map<string, Preference> {
  const out = new Map<string, Preference>();
  if (values === undefined) return out;
  for (const value of typeof values === "string" ? [values] : values) {
    for (const item of splitOutsideQuotes(value, ",")) {
      const [head, ...rest] = splitOutsideQuotes(item, ";");
      const first = nameValue(head ?? "");
      if (first === undefined || out.has(first.name)) continue;
      const params: Record<string, string> = {};
      for (const part of rest) {
        const param = nameValue(part);
        if (param !== undefined && !(param.name in params)) params[param.name] = param.value;
      }
      out.set(first.name, { name: first.name, value: first.value, params });
    }
  }
  return out;
}

/** True when the header holds the `respond-async` preference. */
export function prefersRespondAsync(values: readonly string[] | string | undefined): boolean {
  return hasPreference(values, RESPOND_ASYNC);
}

/**
 * True when the header holds preference `token`. Cheaper than `parsePrefer` on the hot path: it splits
 * only as far as it must.
 */
export function hasPreference(values: readonly string[] | string | undefined, token: string): boolean {
  if (values === undefined) return false;
  for (const value of typeof values === "string" ? [values] : values) {
    for (const item of splitOutsideQuotes(value, ",")) {
      if (nameOf(item) === token) return true;
    }
  }
  return false;
}

/** `wait=N` in seconds (RFC 7240 section 4.3), when present and a whole number. */
export function preferredWaitSeconds(values: readonly string[] | string | undefined): number | undefined {
  const wait = parsePrefer(values).get("wait")?.value;
  return wait !== undefined && /^\d{1,9}$/.test(wait) ? Number(wait) : undefined;
}

function nameOf(item: string): string | undefined {
  const name = /^[\s]*([^\s=;]+)/.exec(item)?.[1];
  return name?.toLowerCase();
}

function nameValue(part: string): { name: string; value: string } | undefined {
  const eq = indexOutsideQuotes(part, "=");
  const name = (eq < 0 ? part : part.slice(0, eq)).trim().toLowerCase();
  if (name === "" || /[\s"]/.test(name)) return undefined;
  return { name, value: eq < 0 ? "" : unquote(part.slice(eq + 1).trim()) };
}

function unquote(text: string): string {
  if (text.length < 2 || !text.startsWith('"') || !text.endsWith('"')) return text;
  return text.slice(1, -1).replace(/\\(.)/g, "$1");
}

function splitOutsideQuotes(text: string, separator: string): string[] {
  const parts: string[] = [];
  let start = 0;
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (quoted && ch === "\\") i++;
    else if (ch === '"') quoted = !quoted;
    else if (!quoted && ch === separator) {
      parts.push(text.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(text.slice(start));
  return parts.filter((p) => p.trim() !== "");
}

function indexOutsideQuotes(text: string, ch: string): number {
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    if (quoted && text[i] === "\\") i++;
    else if (text[i] === '"') quoted = !quoted;
    else if (!quoted && text[i] === ch) return i;
  }
  return -1;
}
