/**
 * Semantic equality of API objects, to decide whether a write is needed. The API server drops empty
 * fields on the way back (`omitempty`), so `undefined`, `null`, `{}` and `[]` all mean "not set"; key
 * order never matters.
 */
export function semanticEqual(a: unknown, b: unknown): boolean {
  if (isUnset(a) || isUnset(b)) return isUnset(a) && isUnset(b);
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
    return a.every((item, i) => semanticEqual(item, b[i]));
  }
  if (typeof a === "object" && typeof b === "object") {
    const ra = a as Record<string, unknown>;
    const rb = b as Record<string, unknown>;
    const keys = new Set([...Object.keys(ra), ...Object.keys(rb)]);
    for (const key of keys) {
      if (!semanticEqual(ra[key], rb[key])) return false;
    }
    return true;
  }
  return a === b;
}

function isUnset(value: unknown): boolean {
  if (value === undefined || value === null) return true;
  if (Array.isArray(value)) return value.length === 0;
  if (typeof value === "object") return Object.values(value as object).every(isUnset);
  return false;
}
