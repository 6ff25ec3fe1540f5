/**
 * What a parent KIngress asks for through its annotations: the async mode and the per-service delivery
 * policy. Parsed in one place so the reconciler (which reports problems on the status) and the builders
 * (which need valid settings) agree.
 */
import type { DeliveryPolicyOverrides } from "../../lib/envelope.js";
import { AsyncError, ErrorCode } from "../../lib/errors.js";
import { policyFromAnnotations } from "../../lib/policy.js";
import { MODE_ALWAYS, MODE_ANNOTATION, MODE_CONDITIONAL } from "../names.js";
import type { KIngress } from "../types.js";

export type AsyncMode = "conditional" | "always";

export interface AsyncSettings {
  readonly mode: AsyncMode;
  /** Empty when the Service sets no policy annotation. */
  readonly policy: DeliveryPolicyOverrides;
}

/** Why the annotations cannot be used: what `kubectl get kingress` shows in REASON and the message. */
export interface SettingsProblem {
  readonly reason: "InvalidAnnotation";
  readonly message: string;
}

export type SettingsResult = { ok: true; settings: AsyncSettings } | { ok: false; problem: SettingsProblem };

export function readAsyncSettings(parent: KIngress): SettingsResult {
  const annotations = parent.metadata.annotations ?? {};
  const problems: string[] = [];

  let mode: AsyncMode = "conditional";
  const rawMode = annotations[MODE_ANNOTATION];
  if (rawMode === undefined || rawMode === MODE_CONDITIONAL) mode = "conditional";
  else if (rawMode === MODE_ALWAYS) mode = "always";
  else {
    problems.push(
      `annotation ${MODE_ANNOTATION} is ${JSON.stringify(rawMode)}; use ${MODE_CONDITIONAL} (the default) or ${MODE_ALWAYS}`,
    );
  }

  const { policy, problems: policyProblems } = policyFromAnnotations(annotations);
  for (const p of policyProblems) {
    problems.push(`annotation ${p.name} is ${JSON.stringify(p.value)}: ${p.message}`);
  }

  if (problems.length > 0) {
    return { ok: false, problem: { reason: "InvalidAnnotation", message: problems.join("; ") } };
  }
  return { ok: true, settings: { mode, policy } };
}

/** For callers that have already reported problems: the settings, or an AsyncError naming them. */
export function requireAsyncSettings(parent: KIngress): AsyncSettings {
  const result = readAsyncSettings(parent);
  if (!result.ok) throw new AsyncError(ErrorCode.InvalidAnnotation, result.problem.message);
  return result.settings;
}
