import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import {
  ageOrigin,
  CONTEXT_FIELDS,
  DATA_FIELD,
  DROPPED_FIELDS_FIELD,
  deadLetterFields,
  describeOutcome,
  fieldPairs,
  fieldValue,
  MAX_EXTRA_FIELDS,
  REPLAYED_AT_FIELD,
  readDeadLetterContext,
  readMeta,
  withMeta,
} from "./entry.js";
import { ErrorCode } from "./errors.js";

test("fieldValue reads a flat field list", () => {
  assert.equal(fieldValue(["data", "x", "attempts", "2"], "attempts"), "2");
  assert.equal(fieldValue(["data"], "data"), undefined);
});

test("fieldPairs walks a flat field list in pairs, ignoring a dangling name", () => {
  assert.deepEqual(
    [...fieldPairs(["a", "1", "b", "2", "c"])],
    [
      ["a", "1"],
      ["b", "2"],
    ],
  );
});

describe("delivery context", () => {
  const outcome = { kind: "response", status: 503, durationMs: 5 } as const;

  test("readMeta reads what withMeta wrote, and a new entry as no attempts yet", () => {
    const fields = withMeta(["data", "x"], {
      attempts: 3,
      firstAttemptAt: 1000,
      lastAttemptAt: 2000,
      outcome,
    });
    assert.deepEqual(readMeta(fields), { attempts: 3, firstAttemptAt: 1000 });
    assert.deepEqual(readMeta(["data", "x"]), { attempts: 0 });
    assert.deepEqual(readMeta(["attempts", "-1", "firstAttemptAt", "soon"]), { attempts: 0 });
  });

  test("withMeta puts data first, keeps other fields and replayedAt, and replaces the old context", () => {
    const before = ["other", "o", "data", "x", "attempts", "1", "reason", "rejected", "replayedAt", "9"];
    const fields = withMeta(before, { attempts: 2, firstAttemptAt: 10, lastAttemptAt: 20, outcome });
    assert.deepEqual(fields, [
      "data",
      "x",
      "other",
      "o",
      "replayedAt",
      "9",
      "attempts",
      "2",
      "firstAttemptAt",
      "10",
      "lastAttemptAt",
      "20",
      "lastStatus",
      "503",
      "lastError",
      "target answered 503",
    ]);
  });

  test("withMeta keeps data, ours and replayedAt, and at most MAX_EXTRA_FIELDS others, counting the rest", () => {
    const meta = { attempts: 1, firstAttemptAt: 10, lastAttemptAt: 20, outcome };
    const extra = Array.from({ length: 5000 }, (_, i) => [`x${i}`, `${i}`]).flat();
    const fields = withMeta([...extra, "replayedAt", "9", "data", "d"], meta);
    assert.equal(fieldValue(fields, DATA_FIELD), "d");
    assert.equal(fields[0], DATA_FIELD);
    assert.equal(fieldValue(fields, REPLAYED_AT_FIELD), "9");
    assert.equal(fieldValue(fields, `x${MAX_EXTRA_FIELDS - 1}`), `${MAX_EXTRA_FIELDS - 1}`);
    assert.equal(fieldValue(fields, `x${MAX_EXTRA_FIELDS}`), undefined);
    assert.equal(fieldValue(fields, DROPPED_FIELDS_FIELD), String(5000 - MAX_EXTRA_FIELDS));
    assert.equal(fields.length / 2, 1 + MAX_EXTRA_FIELDS + 1 + 1 + 5);
    // Written again (the next retry), the count carries over; with no extra fields allowed, it grows.
    assert.deepEqual(withMeta(fields, meta), fields);
    const bare = withMeta(fields, meta, { extraFields: 0 });
    assert.equal(fieldValue(bare, DROPPED_FIELDS_FIELD), "5000");
    assert.deepEqual(bare.slice(0, 6), ["data", "d", "replayedAt", "9", DROPPED_FIELDS_FIELD, "5000"]);
    // Nothing dropped: no count.
    assert.equal(fieldValue(withMeta(["data", "d", "other", "o"], meta), DROPPED_FIELDS_FIELD), undefined);
  });

  test("a dead letter reads back as it was written", () => {
    const error = {
      kind: "error",
      code: ErrorCode.TargetUnreachable,
      message: "refused",
      durationMs: 1,
    } as const;
    const fields = deadLetterFields(
      ["data", "x"],
      { attempts: 4, firstAttemptAt: 10, lastAttemptAt: 20, outcome: error },
      { reason: "max-attempts", deadLetteredAt: 30, sourceEntryId: "1-1" },
    );
    assert.deepEqual(readDeadLetterContext(fields), {
      reason: "max-attempts",
      attempts: 4,
      lastStatus: "",
      lastError: describeOutcome(error),
      firstAttemptAt: 10,
      lastAttemptAt: 20,
      deadLetteredAt: 30,
      sourceEntryId: "1-1",
    });
    assert.deepEqual(readDeadLetterContext(["data", "x"]), {
      reason: "",
      attempts: 0,
      lastStatus: "",
      lastError: "",
      firstAttemptAt: undefined,
      lastAttemptAt: undefined,
      deadLetteredAt: undefined,
      sourceEntryId: "",
    });
  });

  test("an entry's age counts from its acceptance, or from its replay when that is later", () => {
    assert.equal(ageOrigin(100, ["data", "x"]), 100);
    assert.equal(ageOrigin(100, ["data", "x", "replayedAt", "500"]), 500);
    assert.equal(ageOrigin(900, ["data", "x", "replayedAt", "500"]), 900);
    assert.equal(ageOrigin(undefined, ["data", "x", "replayedAt", "500"]), 500);
    assert.equal(ageOrigin(undefined, ["data", "x", "replayedAt", "garbage"]), undefined);
  });
});

// The Lua scripts name entry fields too; these tests keep their names and ours the same.

/** Every `lua/*.lua` file under src/. */
function luaScripts(): { file: string; lua: string }[] {
  const src = fileURLToPath(new URL("../", import.meta.url));
  const found: { file: string; lua: string }[] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith(".lua") && dir.endsWith("/lua")) {
        found.push({ file: relative(src, path), lua: readFileSync(path, "utf8") });
      }
    }
  };
  walk(src);
  return found;
}

/** Lua without its comments (none of our scripts has `--` inside a string). */
function withoutComments(lua: string): string {
  return lua.replace(/--\[(=*)\[[\s\S]*?\]\1\]/g, "").replace(/--[^\n]*/g, "");
}

/** The top-level arguments of the call whose "(" is at `open`. */
function callArguments(code: string, open: number): string[] {
  const args: string[] = [];
  let depth = 0;
  let quote: string | undefined;
  let current = "";
  for (let i = open + 1; i < code.length; i++) {
    const ch = code[i] as string;
    if (quote) {
      if (ch === quote && code[i - 1] !== "\\") quote = undefined;
    } else if (ch === '"' || ch === "'") {
      quote = ch;
    } else if (ch === "(" || ch === "{" || ch === "[") {
      depth++;
    } else if (ch === ")" || ch === "}" || ch === "]") {
      if (depth === 0) break;
      depth--;
    } else if (ch === "," && depth === 0) {
      args.push(current.trim());
      current = "";
      continue;
    }
    current += ch;
  }
  args.push(current.trim());
  return args;
}

const literal = (arg: string | undefined) => /^"([^"]*)"$/.exec(arg ?? "")?.[1];

/**
 * The entry field names a script uses: the field names of its XADDs, the names it appends to a field
 * list (`kept[#kept + 1] = "replayedAt"`), and the keys of its name sets (`{ attempts = true }`).
 */
function fieldNamesIn(lua: string): { names: string[]; written: string[]; sets: Map<string, string[]> } {
  const code = withoutComments(lua);
  const written: string[] = [];
  for (const call of code.matchAll(/redis\.call\(\s*"XADD"/g)) {
    const args = callArguments(code, (call.index ?? 0) + "redis.call".length);
    // "XADD", key, id, then name, value, ...: a name past an unpack() cannot be known, and is not a literal.
    for (let i = 3; i < args.length; i += 2) {
      const name = literal(args[i]);
      if (name !== undefined) written.push(name);
    }
  }
  for (const append of code.matchAll(/(\w+)\[#\1\s*\+\s*1\]\s*=\s*"([A-Za-z_]\w*)"/g))
    written.push(append[2] as string);
  const sets = new Map<string, string[]>();
  for (const table of code.matchAll(/local\s+(\w+)\s*=\s*\{([^{}]*)\}/g)) {
    const entries = (table[2] as string)
      .split(/[,;]/)
      .map((e) => e.trim())
      .filter((e) => e.length > 0);
    const keys = entries.map((e) => /^(\w+)\s*=\s*true$/.exec(e)?.[1]);
    if (keys.length > 0 && keys.every((k) => k !== undefined)) {
      sets.set(table[1] as string, keys as string[]);
    }
  }
  return { names: [...written, ...[...sets.values()].flat()], written, sets };
}

describe("the Lua scripts and entry.ts name the same fields", () => {
  const known = new Set([DATA_FIELD, DROPPED_FIELDS_FIELD, ...CONTEXT_FIELDS]);
  const scripts = luaScripts();

  test("the check sees what it should: a misspelt field in a script is caught", () => {
    const { names, sets } = fieldNamesIn(`
      -- "notAField" in a comment is not a use
      local context = { attempts = true, bogus = true }
      local id = redis.call("XADD", KEYS[1], "*", "data", ARGV[1], "attempt", ARGV[2])
      redis.call("XADD", KEYS[2], "*", unpack(fields))
      kept[#kept + 1] = "replayedAtt"
    `);
    assert.deepEqual(sets.get("context"), ["attempts", "bogus"]);
    assert.deepEqual(
      names.filter((n) => !known.has(n)),
      ["attempt", "replayedAtt", "bogus"],
    );
  });

  test("every field name a script uses is one of entry.ts's", () => {
    assert.ok(scripts.length >= 6, `found only ${scripts.map((s) => s.file).join(", ")}`);
    const used = scripts.flatMap(({ file, lua }) => fieldNamesIn(lua).names.map((name) => ({ file, name })));
    assert.deepEqual(
      used.filter(({ name }) => !known.has(name)),
      [],
      "fields the scripts name that src/lib/entry.ts does not",
    );
    const names = new Set(used.map(({ name }) => name));
    assert.ok(names.has(DATA_FIELD) && names.has(REPLAYED_AT_FIELD), "the scripts' own fields were found");
  });

  test("the replay script drops exactly CONTEXT_FIELDS, and adds replayedAt", () => {
    const replay = scripts.find(({ file }) => file.endsWith("replay-2.lua"));
    assert.ok(replay, "src/dlq/lua/replay-2.lua");
    const { written, sets } = fieldNamesIn(replay.lua);
    assert.deepEqual([...(sets.get("context") ?? [])].sort(), [...CONTEXT_FIELDS].sort());
    assert.deepEqual(written, [REPLAYED_AT_FIELD]);
  });
});
