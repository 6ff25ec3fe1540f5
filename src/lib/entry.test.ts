import assert from "node:assert/strict";
import { test } from "node:test";
import { fieldPairs, fieldValue } from "./entry.js";

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
