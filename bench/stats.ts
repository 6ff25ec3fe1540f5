/** Small pure helpers for the bench's figures and its table. */

/** Nearest-rank percentile of an ascending array; NaN when empty. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1] as number;
}

/** One target from the issue, with the figure measured against it. */
export interface TargetCheck {
  readonly target: string;
  readonly measured: string;
  readonly met: boolean;
}

export function atLeast(name: string, measured: number, wanted: number, unit = ""): TargetCheck {
  return {
    target: `${name} >= ${wanted}${unit}`,
    measured: `${fmt(measured)}${unit}`,
    met: measured >= wanted,
  };
}

export function atMost(name: string, measured: number, wanted: number, unit = ""): TargetCheck {
  return {
    target: `${name} <= ${wanted}${unit}`,
    measured: `${fmt(measured)}${unit}`,
    met: measured <= wanted,
  };
}

export function holds(name: string, ok: boolean, detail: string): TargetCheck {
  return { target: name, measured: detail, met: ok };
}

/** A number for people: thousands without decimals, small values with up to two. */
export function fmt(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  if (Math.abs(value) >= 1000) return String(Math.round(value));
  if (Math.abs(value) >= 100) return value.toFixed(0);
  if (Math.abs(value) >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

/** A plain-text (and Markdown) table. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: readonly string[]) =>
    `| ${cells.map((c, i) => c.padEnd(widths[i] as number)).join(" | ")} |`;
  return [line(header), `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`, ...rows.map(line)].join("\n");
}
