import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type Schema, validate } from "./openapi.js";

const schema: Schema = {
  type: "object",
  required: ["name"],
  properties: {
    name: { type: "string" },
    mode: { type: "string", enum: ["a", "b"] },
    count: { type: "integer", format: "int32" },
    big: { type: "integer", format: "int64" },
    ratio: { type: "number" },
    on: { type: "boolean" },
    port: { anyOf: [{ type: "integer" }, { type: "string" }], "x-kubernetes-int-or-string": true },
    tags: { type: "array", items: { type: "string" } },
    headers: { type: "object", additionalProperties: { type: "string" } },
    closed: { type: "object", properties: { x: { type: "string" } }, additionalProperties: false },
    open: {
      type: "object",
      properties: { x: { type: "string" } },
      "x-kubernetes-preserve-unknown-fields": true,
    },
    meta: { type: "object" },
    maybe: { type: "string", nullable: true },
    split: { anyOf: [{ type: "string" }, { type: "object", required: ["exact"] }] },
  },
};

describe("OpenAPI v3 validator (CRD subset)", () => {
  it("accepts a valid object", () => {
    assert.deepEqual(
      validate(
        {
          name: "n",
          mode: "a",
          count: 5,
          big: 2 ** 40,
          ratio: 0.5,
          on: true,
          port: "http",
          tags: ["x"],
          headers: { a: "b" },
          closed: { x: "y" },
          open: { x: "y", anything: [1, { deep: true }] },
          meta: { whatever: { goes: 1 } },
          maybe: null,
          split: { exact: "v" },
        },
        schema,
      ),
      [],
    );
    assert.deepEqual(validate({ name: "n", port: 80 }, schema), []);
  });

  const rejects: Array<[string, unknown, RegExp]> = [
    ["a missing required field", {}, /^name: required$/],
    ["a wrong type", { name: 1 }, /^name: must be string, got integer$/],
    ["a value outside the enum", { name: "n", mode: "c" }, /^mode: must be one of "a", "b"$/],
    ["an int32 overflow", { name: "n", count: 2 ** 31 }, /^count: out of range for int32$/],
    [
      "a fraction where an integer is wanted",
      { name: "n", count: 1.5 },
      /^count: must be integer, got number$/,
    ],
    ["an unsafe int64", { name: "n", big: 2 ** 60 }, /^big: out of range for int64$/],
    [
      "a boolean for int-or-string",
      { name: "n", port: true },
      /^port: must be an integer or a string, got boolean$/,
    ],
    ["a wrong array item", { name: "n", tags: ["x", 2] }, /^tags\[1\]: must be string, got integer$/],
    ["a wrong map value", { name: "n", headers: { a: 1 } }, /^headers\.a: must be string, got integer$/],
    [
      "a field additionalProperties: false forbids",
      { name: "n", closed: { y: "z" } },
      /^closed\.y: not allowed$/,
    ],
    ["an undeclared field (would be pruned)", { name: "n", extra: 1 }, /^extra: unknown field/],
    ["null where not nullable", { name: null }, /^name: must not be null$/],
    ["no anyOf option matching", { name: "n", split: {} }, /^split: matches none of the allowed shapes$/],
    ["an array where an object is wanted", [], /^\(root\): must be object, got array$/],
  ];
  for (const [what, value, problem] of rejects) {
    it(`rejects ${what}`, () => {
      const problems = validate(value, schema);
      assert.equal(problems.length, 1, JSON.stringify(problems));
      assert.match(problems[0] as string, problem);
    });
  }
});
