/**
 * `knative-async dev [--port 8080] [--always] [--sleep 2s] [--direct]`: the local all-in-one mode.
 * Prints what to try, then one line per async request as it is queued and as each attempt ends.
 */
import { parseArgs } from "node:util";
import { ConfigError } from "../lib/config.js";
import { runComponent } from "../lib/process.js";
import { parseRedisAddress } from "../lib/redis.js";
import { loadDevEnv } from "./config.js";
import { type DevOptions, startDev } from "./dev.js";
import { formatAccepted, formatAttempt } from "./format.js";
import { RedisServerMissingError } from "./redis-server.js";

const USAGE = `usage: knative-async dev [options]
  --port N      gateway port (default 8080)
  --host H      gateway address (default 127.0.0.1)
  --always      always-async mode: only "Prefer: respond-sync" goes straight to the app
  --sleep D     how long the sample app sleeps before answering (default 2s)
  --direct      the dispatcher calls the app itself instead of going through the consumer
Environment: REDIS_ADDRESS (use this Redis instead of starting one), REDIS_STREAM_NAME, LOG_LEVEL
(components' JSON logs on stderr, default warn), and the dispatcher's retry settings such as MAX_ATTEMPTS.
`;

export async function main(argv: string[]): Promise<void> {
  let parsed: ReturnType<typeof parseOptions>;
  try {
    parsed = parseOptions(argv);
  } catch (err) {
    process.stderr.write(`knative-async dev: ${(err as Error).message}\n\n${USAGE}`);
    process.exit(2);
  }
  if (parsed === "help") {
    process.stdout.write(USAGE);
    return;
  }
  const options = parsed;
  const out = (line: string) => process.stdout.write(`${line}\n`);
  await runComponent("dev", async () => {
    let dev: Awaited<ReturnType<typeof startDev>>;
    try {
      dev = await startDev({
        ...options,
        onAccepted: (info) => out(formatAccepted(info)),
        onAttempt: (info) => out(formatAttempt(info)),
      });
    } catch (err) {
      if (err instanceof RedisServerMissingError) throw new ConfigError(err.message);
      if ((err as NodeJS.ErrnoException).code === "EADDRINUSE") {
        throw new ConfigError(`port ${options.port} is already in use; choose another with --port`);
      }
      throw err;
    }
    const url = dev.gatewayUrl;
    // The address may hold a password: shown masked, and then the dlq hint cannot repeat it.
    const redisShown = parseRedisAddress(dev.redisAddress).display;
    const redisForDlq = redisShown === dev.redisAddress ? dev.redisAddress : "<your REDIS_ADDRESS>";
    out(`knative-async dev: everything is running (${options.always ? "always-async" : "conditional"} mode)
  gateway      ${url}   routes like the async KIngress
  producer     http://127.0.0.1:${dev.ports.producer}
  dispatcher   http://127.0.0.1:${dev.ports.dispatcher}/metrics   (${options.direct ? "direct delivery" : `CloudEvents to the consumer`})
  consumer     http://127.0.0.1:${dev.ports.consumer}
  sample app   http://127.0.0.1:${dev.ports.app}   sleeps ${options.sleep} per request
  redis        ${redisShown}${dev.redisDir ? `   started here, data in ${dev.redisDir}` : ""}   stream "${options.streamName}"

Try:
  curl -i -H 'Prefer: respond-async' ${url}/hello     # 202 at once, with a request id
  curl -i ${url}/hello                                 # ${options.always ? "202 too (always-async)" : `waits for the app (${options.sleep})`}
  curl -i -H 'Prefer: respond-async' --data-binary @/bin/ls ${url}/upload    # binary bodies arrive byte for byte
  curl -i -H 'Prefer: respond-async' '${url}/flaky?status=503'               # retried, then dead-lettered
  REDIS_ADDRESS=${redisForDlq} REDIS_STREAM_NAME=${options.streamName} npx knative-async dlq list

Ctrl-C stops everything.
`);
    return dev;
  });
}

function parseOptions(argv: string[]): DevOptions | "help" {
  const { values } = parseArgs({
    args: argv,
    options: {
      port: { type: "string", default: "8080" },
      host: { type: "string", default: "127.0.0.1" },
      always: { type: "boolean", default: false },
      sleep: { type: "string", default: "2s" },
      direct: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) return "help";
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new Error(`--port must be a port number, got ${values.port}`);
  const env = loadDevEnv(process.env);
  return {
    port,
    host: values.host,
    always: values.always,
    sleep: values.sleep,
    direct: values.direct,
    ...(env.redisAddress === undefined ? {} : { redisAddress: env.redisAddress }),
    streamName: env.streamName,
    logLevel: env.logLevel,
    dispatcherEnv: env.dispatcherEnv,
  };
}
