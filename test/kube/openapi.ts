/**
 * A small validator for the OpenAPI v3 subset Kubernetes CRD schemas use: type, properties, required,
 * items, enum, nullable, anyOf, additionalProperties (boolean or schema), x-kubernetes-int-or-string,
 * x-kubernetes-preserve-unknown-fields and the integer formats. No JSON-schema library is installed, and
 * this is all the Knative networking CRD needs.
 *
 * Stricter than the API server in one way, on purpose: a field the schema does not declare is reported.
 * The API server would silently prune it, which for the controller's output means a route or header
 * that never reaches the networking layer; a test should say so. Objects declared with no properties at
 * all (the CRD's `metadata: {type: object}`) are free-form, as the API server treats metadata itself.
 */
import { readFileSync } from "node:fs";
import { parse } from "yaml";

export interface Schema {
  type?: "object" | "array" | "string" | "integer" | "number" | "boolean";
  format?: string;
  properties?: Record<string, Schema>;
  required?: string[];
  items?: Schema;
  enum?: unknown[];
  nullable?: boolean;
  anyOf?: Schema[];
  additionalProperties?: boolean | Schema;
  "x-kubernetes-int-or-string"?: boolean;
  "x-kubernetes-preserve-unknown-fields"?: boolean;
  description?: string;
}

const INT_RANGES: Record<string, [number, number]> = {
  int32: [-(2 ** 31), 2 ** 31 - 1],
  int64: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
  int: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
};

function typeOf(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  if (typeof value === "number") return Number.isInteger(value) ? "integer" : "number";
  return typeof value;
}

function matchesType(value: unknown, type: NonNullable<Schema["type"]>): boolean {
  const actual = typeOf(value);
  if (type === "number") return actual === "number" || actual === "integer";
  return actual === type;
}

/** Every problem with `value` against `schema`, as `path: message`; empty when valid. */
export function validate(value: unknown, schema: Schema, path = ""): string[] {
  const at = path === "" ? "(root)" : path;
  if (value === null) return schema.nullable ? [] : [`${at}: must not be null`];

  if (schema["x-kubernetes-int-or-string"]) {
    const t = typeOf(value);
    if (t !== "integer" && t !== "string") return [`${at}: must be an integer or a string, got ${t}`];
    return [];
  }
  if (schema.anyOf && !schema.anyOf.some((option) => validate(value, option, path).length === 0)) {
    return [`${at}: matches none of the allowed shapes`];
  }
  if (schema.type !== undefined && !matchesType(value, schema.type)) {
    return [`${at}: must be ${schema.type}, got ${typeOf(value)}`];
  }
  const problems: string[] = [];
  if (schema.enum && !schema.enum.some((allowed) => allowed === value)) {
    problems.push(`${at}: must be one of ${schema.enum.map((e) => JSON.stringify(e)).join(", ")}`);
  }
  if (schema.type === "integer" && schema.format !== undefined) {
    const range = INT_RANGES[schema.format];
    if (range && ((value as number) < range[0] || (value as number) > range[1])) {
      problems.push(`${at}: out of range for ${schema.format}`);
    }
  }
  if (schema.type === "array" && schema.items) {
    (value as unknown[]).forEach((item, i) => {
      problems.push(...validate(item, schema.items as Schema, `${path}[${i}]`));
    });
  }
  if (schema.type === "object")
    problems.push(...validateObject(value as Record<string, unknown>, schema, path));
  return problems;
}

function validateObject(value: Record<string, unknown>, schema: Schema, path: string): string[] {
  const problems: string[] = [];
  const prefix = path === "" ? "" : `${path}.`;
  for (const name of schema.required ?? []) {
    if (value[name] === undefined) problems.push(`${prefix}${name}: required`);
  }
  const properties = schema.properties ?? {};
  const freeForm = schema.properties === undefined && schema.additionalProperties === undefined;
  for (const [name, field] of Object.entries(value)) {
    if (field === undefined) continue;
    const declared = properties[name];
    if (declared) {
      problems.push(...validate(field, declared, `${prefix}${name}`));
    } else if (typeof schema.additionalProperties === "object") {
      problems.push(...validate(field, schema.additionalProperties, `${prefix}${name}`));
    } else if (schema.additionalProperties === false) {
      problems.push(`${prefix}${name}: not allowed`);
    } else if (
      !freeForm &&
      !schema["x-kubernetes-preserve-unknown-fields"] &&
      schema.additionalProperties !== true
    ) {
      problems.push(`${prefix}${name}: unknown field (the API server would prune it)`);
    }
  }
  return problems;
}

/** The openAPIV3Schema of one version of a CustomResourceDefinition file. */
export function loadCrdSchema(file: string, version: string): Schema {
  const crd = parse(readFileSync(file, "utf8")) as {
    spec?: { versions?: Array<{ name: string; schema?: { openAPIV3Schema?: Schema } }> };
  };
  const schema = crd.spec?.versions?.find((v) => v.name === version)?.schema?.openAPIV3Schema;
  if (!schema) throw new Error(`${file} has no openAPIV3Schema for version ${version}`);
  return schema;
}
