import assert from "node:assert/strict";
import { test } from "node:test";
import { AsyncError, ErrorCode } from "../lib/errors.js";
import { ByteBudget } from "./budget.js";

const overloaded = () => new AsyncError(ErrorCode.Overloaded, "no room");

/** Settles within `ms`, or says it is still pending. */
function state(promise: Promise<void> | undefined, ms = 20): Promise<string> {
  if (promise === undefined) return Promise.resolve("taken at once");
  return Promise.race([
    promise.then(
      () => "taken",
      (err: AsyncError) => `refused ${err.code}`,
    ),
    new Promise<string>((resolve) => setTimeout(() => resolve("waiting"), ms)),
  ]);
}

test("bytes that fit are taken at once, without a promise, and given back", () => {
  const budget = new ByteBudget(1000, 1000);
  assert.equal(budget.take(600, overloaded), undefined);
  assert.equal(budget.tryTake(400), true);
  assert.equal(budget.used, 1000);
  assert.equal(budget.tryTake(1), false);
  budget.give(600);
  budget.give(400);
  assert.equal(budget.used, 0);
});

test("a request larger than the whole budget still goes when it is alone", async () => {
  const budget = new ByteBudget(1000, 1000);
  assert.equal(await state(budget.take(5000, overloaded)), "taken at once");
  const next = budget.take(1, overloaded);
  assert.equal(await state(next), "waiting");
  budget.give(5000);
  assert.equal(await state(next), "taken");
});

test("waiters are served in arrival order, and nobody passes a waiter", async () => {
  const budget = new ByteBudget(1000, 5000);
  budget.take(900, overloaded);
  const big = budget.take(800, overloaded);
  const small = budget.take(50, overloaded);
  // 50 would fit now, but the 800 before it waits: taking it would let small requests starve big ones.
  assert.equal(await state(small), "waiting");
  assert.equal(budget.tryTake(50), false);
  assert.equal(budget.waiting, 2);
  budget.give(900);
  assert.equal(await state(big), "taken");
  assert.equal(await state(small), "taken");
  assert.equal(budget.used, 850);
  assert.equal(budget.waiting, 0);
});

test("a waiter that gets no room in time is refused, and the one behind it moves up", async () => {
  const budget = new ByteBudget(1000, 60);
  budget.take(700, overloaded);
  const big = budget.take(600, overloaded);
  const started = Date.now();
  assert.equal(await state(big, 2000), `refused ${ErrorCode.Overloaded}`);
  assert.ok(Date.now() - started >= 50, "refused only after the wait");
  assert.equal(budget.waiting, 0);
  assert.equal(budget.used, 700, "a refused waiter holds nothing");

  const blocked = budget.take(900, overloaded);
  const behind = budget.take(200, () => new AsyncError(ErrorCode.Overloaded, "late"));
  // The 900 times out first; the 200 behind it fits and is taken right then, not after its own wait.
  assert.equal(await state(blocked, 2000), `refused ${ErrorCode.Overloaded}`);
  assert.equal(await state(behind), "taken");
  assert.equal(budget.used, 900);
});
