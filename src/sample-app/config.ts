/**
 * Sample app configuration: how long it sleeps before answering (like the original's test app, which
 * slept 10 s) and whether it records what it receives, for tests.
 */
import { z } from "zod";
import {
  boolSetting,
  durationSetting,
  type Env,
  parseEnv,
  serverEnvFields,
  serverFromEnv,
} from "../lib/config.js";

/** Every environment variable the sample app reads; the keys are the names. */
export const sampleAppEnvSchema = z.object({
  ...serverEnvFields,
  /** How long each request sleeps before its answer; `?sleep=250ms` overrides it per request. */
  SLEEP: durationSetting("10s"),
  /** Keep every received request in memory and serve them at GET /_received. */
  RECORD: boolSetting(false),
});

export interface SampleAppConfig {
  readonly port: number;
  readonly logLevel: string;
  readonly sleepMs: number;
  readonly record: boolean;
}

export function loadSampleAppConfig(env: Env): SampleAppConfig {
  const e = parseEnv("sample-app", sampleAppEnvSchema, env);
  return Object.freeze({ ...serverFromEnv(e), sleepMs: e.SLEEP, record: e.RECORD });
}
