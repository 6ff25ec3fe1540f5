/**
 * The real Knative networking CRD, read at run time from the shared folder beside the repository
 * (`../shared/schemas/`, where CI clones it); it is never copied into the project. Where it is absent,
 * tests skip with `CRD_SKIP_REASON`.
 */
import { existsSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { loadCrdSchema, type Schema } from "./openapi.js";

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

export const INGRESS_CRD_PATH = resolve(repoRoot, "../shared/schemas/knative-networking-ingress-crd.yaml");

/** False, or why the CRD tests skip. */
export const CRD_SKIP_REASON: string | false = existsSync(INGRESS_CRD_PATH)
  ? false
  : `the Knative networking CRD is not at ${INGRESS_CRD_PATH} (CI clones shared/ beside the repository)`;

export function ingressCrdSchema(): Schema {
  return loadCrdSchema(INGRESS_CRD_PATH, "v1alpha1");
}
