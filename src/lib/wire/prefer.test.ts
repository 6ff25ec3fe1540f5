import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { hasPreference, parsePrefer, preferredWaitSeconds, prefersRespondAsync } from "./prefer.js";

describe("Prefer (RFC 7240)", () => {
  const rows: { header: string[] | undefined; async: boolean; wait?: number; note: string }[] = [
    { header: ["respond-async"], async: true, note: "the plain token" },
    { header: ["Respond-Async; foo=bar"], async: true, note: "case-insensitive, with a parameter" },
    { header: ["RESPOND-ASYNC"], async: true, note: "upper case" },
    { header: ["respond-async, wait=5"], async: true, wait: 5, note: "with wait in the same value" },
    { header: ["return=minimal", "wait=5,respond-async"], async: true, wait: 5, note: "several headers" },
    { header: ['foo="a, respond-async"'], async: false, note: "a quoted string holding a comma" },
    { header: ['foo="a \\" , respond-async"'], async: false, note: "an escaped quote inside quotes" },
    { header: ['foo="x", respond-async'], async: true, note: "after a closed quoted string" },
    { header: ["respond-asyncx", "x=respond-async"], async: false, note: "a longer token, and a value" },
    { header: ["  respond-async  "], async: true, note: "surrounding white space" },
    { header: [", ,respond-async,"], async: true, note: "empty list items" },
    { header: ["wait=abc, respond-async"], async: true, note: "a wait that is not a number" },
    { header: ["wait=10", "wait=3"], async: false, wait: 10, note: "the first wait counts" },
    { header: [""], async: false, note: "empty" },
    { header: undefined, async: false, note: "absent" },
  ];
  for (const row of rows) {
    test(`${row.note}: ${JSON.stringify(row.header)}`, () => {
      assert.equal(prefersRespondAsync(row.header), row.async);
      assert.equal(hasPreference(row.header, "respond-async"), row.async);
      assert.equal(parsePrefer(row.header).has("respond-async"), row.async);
      assert.equal(preferredWaitSeconds(row.header), row.wait);
    });
  }

  test("values and parameters are unquoted, names lower-cased", () => {
    const prefs = parsePrefer(['Handling=Lenient; A="b;c", return="repr\\"x"']);
    assert.deepEqual(prefs.get("handling"), { name: "handling", value: "Lenient", params: { a: "b;c" } });
    assert.equal(prefs.get("return")?.value, 'repr"x');
  });

  test("a single string is read like a one-element list", () => {
    assert.equal(prefersRespondAsync("respond-async, wait=1"), true);
    assert.equal(preferredWaitSeconds("respond-async, wait=1"), 1);
  });
});
