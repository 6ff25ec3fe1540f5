/**
 * `knative-async dlq list | show ID | replay ID...|--all | purge ID...|--all`
 * Reads REDIS_ADDRESS, TLS_CERT and REDIS_STREAM_NAME like the other components.
 */
import { parseArgs } from "node:util";
import { ConfigError } from "../lib/config.js";
import { streamKeys } from "../lib/keys.js";
import { connectRedis, waitUntilReady } from "../lib/redis.js";
import { loadDlqConfig } from "./config.js";
import { DeadLetters } from "./dlq.js";
import { detail, escapeText, line, safeJson, summary } from "./format.js";

const USAGE = `usage: knative-async dlq <command>
  list [--limit N] [--after ID] [--json]   dead-lettered requests, oldest first
  show ID                                   one entry in full (JSON), with its decoded request
  replay ID... | --all                      move entries back to the stream, to be delivered again
  purge ID... | --all                       delete entries for good
Environment: REDIS_ADDRESS, TLS_CERT, REDIS_STREAM_NAME (as for the other components).
`;

export async function main(argv: string[], out: NodeJS.WritableStream = process.stdout): Promise<void> {
  const [command, ...rest] = argv;
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: {
      limit: { type: "string", default: "100" },
      after: { type: "string" },
      json: { type: "boolean", default: false },
      all: { type: "boolean", default: false },
    },
  });
  if (command === undefined || command === "help" || command === "--help") {
    out.write(USAGE);
    return;
  }
  const usageProblem = checkUsage(command, positionals, values);
  if (usageProblem) return fail(usageProblem);
  let config: ReturnType<typeof loadDlqConfig>;
  try {
    config = loadDlqConfig(process.env);
  } catch (err) {
    if (err instanceof ConfigError) return fail(err.message);
    throw err;
  }
  const redis = connectRedis(config.redis, { name: "knative-async-dlq", failFast: true });
  const dlq = new DeadLetters(redis, streamKeys(config.streamName));
  try {
    await waitUntilReady(redis, 5000);
    switch (command) {
      case "list": {
        const limit = Number(values.limit);
        const items = await dlq.list({ limit, ...(values.after ? { after: values.after } : {}) });
        if (values.json) {
          for (const item of items) out.write(`${safeJson(summary(item))}\n`);
        } else {
          const key = streamKeys(config.streamName).deadLetter;
          out.write(`${await dlq.count()} dead-lettered in ${escapeText(key)}\n`);
          for (const item of items) out.write(`${line(item)}\n`);
        }
        return;
      }
      case "show": {
        const id = positionals[0] as string;
        const item = await dlq.get(id);
        if (!item) return fail(`no dead-lettered entry ${id}`);
        out.write(`${safeJson(detail(item), 2)}\n`);
        return;
      }
      case "replay": {
        if (values.all) {
          out.write(`replayed ${await dlq.replayAll()}\n`);
          return;
        }
        const { replayed, missing } = await dlq.replay(positionals);
        out.write(`replayed ${replayed}\n`);
        if (missing.length > 0) return fail(`not found: ${missing.join(", ")}`);
        return;
      }
      case "purge": {
        const purged = values.all ? await dlq.purgeAll() : await dlq.purge(positionals);
        out.write(`purged ${purged}\n`);
        return;
      }
      default:
        return;
    }
  } catch (err) {
    return fail(`Redis at ${config.redis.display}: ${(err as Error).message}`);
  } finally {
    redis.disconnect();
  }
}

/** Catches usage mistakes before connecting to anything. */
function checkUsage(
  command: string,
  positionals: string[],
  values: { limit?: string; all?: boolean },
): string | undefined {
  switch (command) {
    case "list": {
      const limit = Number(values.limit);
      return Number.isInteger(limit) && limit >= 1
        ? undefined
        : "--limit must be a whole number of at least 1";
    }
    case "show":
      return positionals.length === 1 ? undefined : "show needs one entry ID (see dlq list)";
    case "replay":
    case "purge":
      return values.all || positionals.length > 0 ? undefined : `${command} needs entry IDs or --all`;
    default:
      return `unknown dlq command ${JSON.stringify(command)}\n${USAGE}`;
  }
}

function fail(message: string): void {
  process.stderr.write(`knative-async dlq: ${message}\n`);
  process.exitCode = 1;
}
