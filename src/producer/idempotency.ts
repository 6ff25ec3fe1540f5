/**
 * Idempotency-Key (draft-ietf-httpapi-idempotency-key-header): a client that did not get our answer can
 * send the same request again with the same key and get the first 202 (same id) instead of a second
 * delivery. The key is remembered with a fingerprint of the request, so reusing a key for a different
 * request is refused (422) rather than silently answered with someone else's id.
 *
 * Decide-and-enqueue is one Lua script (`lua/enqueue-idempotent-2.lua`), so two concurrent requests with
 * one key can never both enqueue.
 */
import { createHash } from "node:crypto";
import type { Redis } from "ioredis";
import { AsyncError, ErrorCode } from "../lib/errors.js";
import { defineScripts } from "../lib/scripts.js";

export const MAX_IDEMPOTENCY_KEY_LENGTH = 255;

function badKey(message: string): AsyncError {
  return new AsyncError(ErrorCode.BadIdempotencyKey, message);
}

// RFC 8941 token characters (tchar, ":" and "/"), for keys sent without quotes.
const BARE_TOKEN = /^[A-Za-z0-9!#$%&'*+.^_`|~:/-]+$/;

/** RFC 8941 sf-string: `"..."` with printable ASCII inside and only `\"` and `\\` as escapes. */
function parseSfString(text: string): string | undefined {
  let out = "";
  for (let i = 1; i < text.length; i++) {
    const ch = text[i] as string;
    if (ch === "\\") {
      const next = text[++i];
      if (next !== '"' && next !== "\\") return undefined;
      out += next;
    } else if (ch === '"') {
      return i === text.length - 1 ? out : undefined;
    } else {
      const code = ch.charCodeAt(0);
      if (code < 0x20 || code > 0x7e) return undefined;
      out += ch;
    }
  }
  return undefined;
}

/**
 * The key from the header values, or undefined when the header is absent. The draft makes the key an
 * sf-string (`"8e03978e-..."`); many clients send it bare, which is accepted when it is a token.
 * Throws BadIdempotencyKey for an empty, too long, repeated or malformed key.
 */
export function parseIdempotencyKey(values: readonly string[] | undefined): string | undefined {
  if (values === undefined || values.length === 0) return undefined;
  if (values.length > 1) throw badKey("more than one Idempotency-Key header");
  const raw = (values[0] as string).trim();
  let key: string | undefined;
  if (raw.startsWith('"')) key = parseSfString(raw);
  else if (BARE_TOKEN.test(raw)) key = raw;
  else if (raw !== "") throw badKey('Idempotency-Key must be a quoted string ("...") or a token');
  if (key === undefined) throw badKey("Idempotency-Key is not a valid quoted string");
  if (key === "") throw badKey("Idempotency-Key is empty");
  if (key.length > MAX_IDEMPOTENCY_KEY_LENGTH) {
    throw badKey(`Idempotency-Key is longer than ${MAX_IDEMPOTENCY_KEY_LENGTH} characters`);
  }
  return key;
}

/**
 * SHA-256 over method, target URL and body. Method and URL cannot contain a newline, so the separators
 * make the encoding unambiguous.
 */
export function requestFingerprint(method: string, url: string, body: Buffer): string {
  return createHash("sha256").update(method).update("\n").update(url).update("\n").update(body).digest("hex");
}

export type EnqueueOutcome = "new" | "replay" | "mismatch" | "in-progress" | "confirm";

export interface EnqueueArgs {
  readonly streamKey: string;
  readonly recordKey: string;
  readonly fingerprint: string;
  readonly id: string;
  /** The envelope JSON, as a string or (for large bodies) as its UTF-8 bytes. */
  readonly envelope: string | Buffer;
  readonly ttlMs: number;
  /** How long a caller may take to confirm the write with replicas; 0 when it does not wait. */
  readonly acceptingMs: number;
}

interface ScriptCommands {
  enqueueIdempotent(...args: (string | number | Buffer)[]): Promise<[string, string]>;
  settleIdempotent(...args: (string | number)[]): Promise<number>;
}

const OUTCOMES: ReadonlySet<string> = new Set(["new", "replay", "mismatch", "in-progress", "confirm"]);

/** The two idempotency scripts, registered on one connection. */
export class IdempotencyScripts {
  readonly #client: ScriptCommands;

  constructor(client: Redis) {
    defineScripts(client, new URL("./lua/", import.meta.url), [
      "enqueue-idempotent-2.lua",
      "settle-idempotent-1.lua",
    ]);
    this.#client = client as unknown as ScriptCommands;
  }

  /** See the script's header for the outcomes. `id` is the request id the key stands for. */
  async enqueue(args: EnqueueArgs): Promise<{ outcome: EnqueueOutcome; id: string }> {
    const [outcome, id] = await this.#client.enqueueIdempotent(
      args.streamKey,
      args.recordKey,
      args.fingerprint,
      args.id,
      args.envelope,
      args.ttlMs,
      args.acceptingMs,
    );
    if (!OUTCOMES.has(outcome)) throw new Error(`unexpected enqueue-idempotent answer ${String(outcome)}`);
    return { outcome: outcome as EnqueueOutcome, id };
  }

  /** Ends the accepting state after WAIT: `accepted`, or `unconfirmed` so a retry confirms again. */
  async settle(recordKey: string, id: string, state: "accepted" | "unconfirmed"): Promise<boolean> {
    return (await this.#client.settleIdempotent(recordKey, id, state)) === 1;
  }
}
