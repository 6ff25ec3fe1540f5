/**
 * Loads Lua scripts named `<name>-<numberOfKeys>.lua` (BullMQ's convention) as ioredis commands, so each
 * is sent with EVALSHA and reloaded transparently after a Redis restart.
 */
import { readFileSync } from "node:fs";
import type { Redis } from "ioredis";

export function defineScripts(client: Redis, directory: URL, names: readonly string[]): void {
  for (const file of names) {
    const match = /^(.+)-(\d+)\.lua$/.exec(file);
    if (!match) throw new Error(`script file ${file} is not named <name>-<numberOfKeys>.lua`);
    const lua = readFileSync(new URL(file, directory), "utf8");
    client.defineCommand(camelCase(match[1] as string), { numberOfKeys: Number(match[2]), lua });
  }
}

function camelCase(name: string): string {
  return name.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}
