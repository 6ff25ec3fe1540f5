/**
 * Loads Lua scripts named `<name>-<numberOfKeys>.lua` (BullMQ's convention) as ioredis commands, so each
 * is sent with EVALSHA and reloaded transparently after a Redis restart.
 */
import { readFileSync } from "node:fs";
import type { Redis } from "ioredis";

export type ScriptArgument = string | number | Buffer;

/**
 * One loaded script: called with its KEYS and its ARGV, it resolves to the script's reply as Redis sent
 * it. The caller that knows the script turns that into a typed value.
 */
export type Script = (keys: readonly string[], args: readonly ScriptArgument[]) => Promise<unknown>;

/** Loads `file` from `directory` on `client`, as the command `<name>` in camelCase. */
export function loadScript(client: Redis, directory: URL, file: string): Script {
  const match = /^(.+)-(\d+)\.lua$/.exec(file);
  if (!match) throw new Error(`script file ${file} is not named <name>-<numberOfKeys>.lua`);
  const name = camelCase(match[1] as string);
  const numberOfKeys = Number(match[2]);
  client.defineCommand(name, { numberOfKeys, lua: readFileSync(new URL(file, directory), "utf8") });
  // ioredis adds the command to the client at run time; its types cannot know it.
  const command = (client as unknown as Record<string, (...args: ScriptArgument[]) => Promise<unknown>>)[
    name
  ];
  if (command === undefined) throw new Error(`ioredis did not define the command ${name}`);
  return (keys, args) => {
    if (keys.length !== numberOfKeys) {
      return Promise.reject(new Error(`${file} takes ${numberOfKeys} keys, got ${keys.length}`));
    }
    return command.call(client, ...keys, ...args);
  };
}

/** Loads each of `names` as a command on `client`, for callers that call them by name. */
export function defineScripts(client: Redis, directory: URL, names: readonly string[]): void {
  for (const file of names) loadScript(client, directory, file);
}

function camelCase(name: string): string {
  return name.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}
