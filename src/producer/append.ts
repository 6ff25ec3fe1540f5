/**
 * Appends envelopes to the request stream in batches: every envelope handed over within one turn of the
 * event loop goes to Redis in one script call (lua/append-batch-1.lua) instead of one XADD each. The
 * entries are the same; what is saved is the client's work per command (a command object, its promise,
 * its encoding, its reply) and Redis's, which at small bodies was a fifth of the producer's time.
 *
 * A request's promise settles only with its batch's answer, so a 202 still follows Redis's
 * acknowledgement of that very entry. A batch that fails or times out fails every request in it (some
 * may still have been stored, as with one XADD that timed out); a batch Redis cut short (out of memory)
 * fails only the requests whose entries were not appended.
 */
import type { Redis } from "ioredis";
import { DATA_FIELD } from "../lib/envelope.js";
import { defineScripts } from "../lib/scripts.js";

interface AppendCommand {
  appendBatch(stream: string, field: string, ...envelopes: string[]): Promise<[number, string?]>;
}

/** A batch is sent at once when it reaches this many envelopes (bounds one script's run in Redis). */
const MAX_BATCH = 256;

interface Batch {
  readonly envelopes: string[];
  readonly done: Promise<[number, string?]>;
  send(): void;
}

export class StreamAppender {
  readonly #client: AppendCommand;
  readonly #stream: string;
  #open: Batch | undefined;

  constructor(client: Redis, stream: string) {
    defineScripts(client, new URL("./lua/", import.meta.url), ["append-batch-1.lua"]);
    this.#client = client as unknown as AppendCommand;
    this.#stream = stream;
  }

  /** Resolves once Redis has appended `envelope`; rejects with Redis's error otherwise. */
  append(envelope: string): Promise<void> {
    const batch = this.#open ?? this.#openBatch();
    const index = batch.envelopes.push(envelope) - 1;
    if (batch.envelopes.length >= MAX_BATCH) batch.send();
    return batch.done.then(([appended, error]) => {
      if (index >= appended) throw new Error(error ?? "the entry was not appended");
    });
  }

  #openBatch(): Batch {
    const envelopes: string[] = [];
    let send!: () => void;
    const done = new Promise<[number, string?]>((resolve, reject) => {
      send = () => {
        if (this.#open === batch) this.#open = undefined;
        this.#client.appendBatch(this.#stream, DATA_FIELD, ...envelopes).then(resolve, reject);
      };
    });
    const batch: Batch = { envelopes, done, send };
    this.#open = batch;
    // After the poll phase: every request read in this turn of the event loop joins the batch.
    setImmediate(() => {
      if (this.#open === batch) send();
    });
    return batch;
  }
}
