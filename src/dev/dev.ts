/**
 * The local all-in-one mode: Redis (its own, unless given one), the sample app, the consumer, the
 * dispatcher, the producer and a gateway that routes like the async KIngress, composed from the same
 * factories the deployables use, in one process.
 */
import { randomBytes } from "node:crypto";
import { loadConsumerConfig } from "../consumer/config.js";
import { startConsumer } from "../consumer/consumer.js";
import { loadDispatcherConfig } from "../dispatcher/config.js";
import { type AttemptInfo, startDispatcher } from "../dispatcher/dispatcher.js";
import { createLogger } from "../lib/logger.js";
import { loadProducerConfig } from "../producer/config.js";
import { type AcceptedInfo, startProducer } from "../producer/producer.js";
import { loadSampleAppConfig } from "../sample-app/config.js";
import { type RunningSampleApp, startSampleApp } from "../sample-app/sample-app.js";
import { startGateway } from "./gateway.js";
import { startRedisServer } from "./redis-server.js";

export interface DevOptions {
  /** Gateway port; 0 picks a free one. */
  readonly port: number;
  readonly host: string;
  readonly always: boolean;
  /** How long the sample app sleeps before answering, e.g. "2s". */
  readonly sleep: string;
  /** Dispatcher delivers directly instead of through the consumer. */
  readonly direct: boolean;
  /** An existing Redis (REDIS_ADDRESS); when absent a private redis-server is started. */
  readonly redisAddress?: string;
  readonly streamName: string;
  /** Component log level (their JSON logs go to stderr). */
  readonly logLevel: string;
  /** Keep what the app receives (tests). */
  readonly record?: boolean;
  /** Extra dispatcher settings (env names), e.g. MAX_ATTEMPTS. */
  readonly dispatcherEnv?: Readonly<Record<string, string>>;
  readonly onAccepted?: (info: AcceptedInfo) => void;
  readonly onAttempt?: (info: AttemptInfo) => void;
}

export interface RunningDev {
  readonly gatewayUrl: string;
  readonly redisAddress: string;
  /** Set when this process started the Redis it uses. */
  readonly redisDir?: string;
  readonly ports: { gateway: number; producer: number; consumer: number; dispatcher: number; app: number };
  readonly app: RunningSampleApp;
  close(): Promise<void>;
}

export async function startDev(options: DevOptions): Promise<RunningDev> {
  const closers: (() => Promise<void>)[] = [];
  const closeAll = async () => {
    for (const close of closers.splice(0).reverse()) {
      await close().catch(() => {});
    }
  };
  const logger = (component: string) =>
    createLogger(component, { level: options.logLevel, destination: process.stderr });
  try {
    let redisAddress = options.redisAddress;
    let redisDir: string | undefined;
    if (redisAddress === undefined) {
      const redis = await startRedisServer();
      closers.push(() => redis.cleanup());
      redisAddress = redis.address;
      redisDir = redis.dir;
    }
    const common = {
      REDIS_ADDRESS: redisAddress,
      REDIS_STREAM_NAME: options.streamName,
      LOG_LEVEL: options.logLevel,
    };

    const app = await startSampleApp(
      loadSampleAppConfig({
        PORT: "0",
        SLEEP: options.sleep,
        RECORD: options.record ? "true" : "false",
        LOG_LEVEL: options.logLevel,
      }),
      { logger: logger("sample-app") },
    );
    closers.push(() => app.close());
    const appHost = `127.0.0.1:${app.port}`;

    // The sample app is the one target: a loopback address stands in for its cluster-local name, and
    // every component checks it, as they would on a cluster. There is no controller to publish it in
    // the async services registry: the allow-list is what lets the producer take it (with no policy).
    const targets = { ALLOWED_TARGET_HOSTS: appHost };
    // The dispatcher signs every event and the consumer checks it, as on a cluster with their Secret.
    const signing = { EVENT_SIGNING_SECRETS: randomBytes(32).toString("base64url") };
    const consumer = await startConsumer(
      loadConsumerConfig({ PORT: "0", LOG_LEVEL: options.logLevel, ...targets, ...signing }),
      { logger: logger("consumer") },
    );
    closers.push(() => consumer.close());

    const dispatcher = await startDispatcher(
      loadDispatcherConfig({
        ...common,
        PORT: "0",
        DISPATCH_MODE: options.direct ? "direct" : "cloudevent",
        K_SINK: `http://127.0.0.1:${consumer.port}/`,
        DISPATCHER_NAME: `dev-${process.pid}`,
        ...targets,
        ...signing,
        ...options.dispatcherEnv,
      }),
      { logger: logger("dispatcher"), ...(options.onAttempt ? { onAttempt: options.onAttempt } : {}) },
    );
    closers.push(() => dispatcher.close());

    const producer = await startProducer(loadProducerConfig({ ...common, PORT: "0", ...targets }), {
      logger: logger("producer"),
      ...(options.onAccepted ? { onAccepted: options.onAccepted } : {}),
    });
    closers.push(() => producer.close());

    const gateway = await startGateway({
      port: options.port,
      host: options.host,
      always: options.always,
      producer: `127.0.0.1:${producer.port}`,
      app: appHost,
    });
    closers.push(() => gateway.close());

    return {
      gatewayUrl: `http://${options.host}:${gateway.port}`,
      redisAddress,
      ...(redisDir ? { redisDir } : {}),
      ports: {
        gateway: gateway.port,
        producer: producer.port,
        consumer: consumer.port,
        dispatcher: dispatcher.port,
        app: app.port,
      },
      app,
      close: closeAll,
    };
  } catch (err) {
    await closeAll();
    throw err;
  }
}
