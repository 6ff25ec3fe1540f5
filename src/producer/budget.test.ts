import assert from "node:assert/strict";
import { test } from "node:test";
import { setImmediate as tick } from "node:timers/promises";
import { AsyncError, ErrorCode } from "../lib/errors.js";
import { type BodyHold, ByteBudget } from "./budget.js";

const overloaded = () => new AsyncError(ErrorCode.Overloaded, "no room");
/** A request the budget must not cut: its body "started" with a stop that fails the test. */
function uncut(hold: BodyHold): BodyHold {
  hold.started?.(() => assert.fail("a request was cut"));
  return hold;
}

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

test("a request that sends nothing holds nothing, however many there are", () => {
  const budget = new ByteBudget(1000, 1000, 1000);
  const idle = Array.from({ length: 100 }, () => uncut(budget.open(overloaded)));
  assert.equal(budget.used, 0);
  assert.equal(budget.reading, 100);
  const late = uncut(budget.open(overloaded));
  assert.equal(budget.take(late, 1000), undefined, "the whole budget is still free");
  for (const hold of idle) budget.close(hold);
  budget.close(late);
  assert.equal(budget.used, 0);
  assert.equal(budget.reading, 0);
});

test("bytes are taken chunk by chunk as they come, and all given back at close, once", () => {
  const budget = new ByteBudget(1000, 1000, 1000);
  const first = uncut(budget.open(overloaded));
  const second = uncut(budget.open(overloaded));
  assert.equal(budget.take(second, 300), undefined);
  assert.equal(budget.take(second, 300), undefined);
  assert.equal(second.held, 600);
  budget.doneReading(second);
  assert.equal(budget.used, 600, "a body read keeps its bytes until it is stored");
  budget.close(second);
  budget.close(second);
  assert.equal(budget.used, 0);
  budget.close(first);
});

test("the oldest reader may pass the budget by one body; the others wait for room", async () => {
  const budget = new ByteBudget(1000, 5000, 1000);
  const large = uncut(budget.open(overloaded));
  const other = uncut(budget.open(overloaded));
  assert.equal(await state(budget.take(large, 4000)), "taken at once");
  // The oldest reader's bytes are not counted against the others' room.
  assert.equal(await state(budget.take(other, 1000)), "taken at once");
  const more = budget.take(other, 10);
  assert.equal(await state(more), "waiting");
  assert.equal(budget.take(large, 1000), undefined, "the oldest passes the waiter");
  assert.equal(budget.used, 6000);
  budget.doneReading(large);
  // Now the oldest reader, it may pass the budget too, but not while the stored body holds that room.
  assert.equal(await state(more), "waiting");
  budget.close(large);
  assert.equal(await state(more), "taken");
  budget.close(other);
  assert.equal(budget.used, 0);
});

test("waiting chunks are served oldest first, and a newcomer does not pass them", async () => {
  const budget = new ByteBudget(1000, 2000, 5000);
  const oldest = uncut(budget.open(overloaded));
  const full = uncut(budget.open(overloaded));
  budget.take(full, 1000);
  const served: string[] = [];
  const waitFor = (name: string, bytes: number) => {
    const hold = uncut(budget.open(overloaded));
    const room = budget.take(hold, bytes);
    assert.notEqual(room, undefined, `${name} waits`);
    return room?.then(() => served.push(name));
  };
  const all = [waitFor("a", 100), waitFor("b", 100), waitFor("c", 10)];
  assert.equal(budget.waiting, 3);
  budget.close(full);
  await Promise.all(all);
  assert.deepEqual(served, ["a", "b", "c"]);
  assert.equal(budget.waiting, 0);
  budget.close(oldest);
});

test("a request over its fair share waits while one within its share is served first", async () => {
  const budget = new ByteBudget(1000, 2000, 5000);
  const oldest = uncut(budget.open(overloaded));
  const big = uncut(budget.open(overloaded));
  const other = uncut(budget.open(overloaded));
  const small = uncut(budget.open(overloaded));
  budget.take(big, 800);
  budget.take(other, 200);
  // The share is 1000 / 4 readers = 250: small asks for 150 of it, big already holds 800.
  const smallRoom = budget.take(small, 150);
  const bigRoom = budget.take(big, 100);
  assert.equal(await state(smallRoom), "waiting");
  assert.equal(await state(bigRoom), "waiting");
  budget.close(other);
  // In arrival order big would come first (and fit); within its share, small does.
  assert.equal(await state(smallRoom), "taken");
  assert.equal(await state(bigRoom), "waiting");
  budget.close(small);
  assert.equal(await state(bigRoom), "taken", "nobody within its share waits any more");
  budget.close(big);
  budget.close(oldest);
  assert.equal(budget.used, 0);
});

test("a request over its share that finds others waiting is passed, and refused after the wait", async () => {
  const budget = new ByteBudget(1000, 2000, 60);
  const oldest = uncut(budget.open(overloaded));
  const first = uncut(budget.open(overloaded));
  const slow = uncut(budget.open(overloaded));
  const next = uncut(budget.open(overloaded));
  budget.take(first, 700);
  budget.take(slow, 200);
  const slowRoom = budget.take(slow, 200);
  // Share 250: slow would hold 400, next asks for 50 of its 250 and fits, so it goes first.
  assert.equal(budget.take(next, 50), undefined);
  const started = Date.now();
  assert.equal(await state(slowRoom, 2000), `refused ${ErrorCode.Overloaded}`);
  assert.ok(Date.now() - started >= 50, "refused only after the wait");
  assert.equal(budget.waiting, 0);
  assert.equal(budget.used, 950);
  budget.close(slow);
  assert.equal(budget.used, 750, "a refused request gives back everything it held");
  for (const hold of [oldest, first, next]) budget.close(hold);
});

test("a request that goes away while its chunk waits leaves the line and holds nothing", async () => {
  const budget = new ByteBudget(1000, 1000, 5000);
  const oldest = uncut(budget.open(overloaded));
  const full = uncut(budget.open(overloaded));
  budget.take(full, 1000);
  const gone = uncut(budget.open(overloaded));
  budget.take(gone, 100);
  const behind = uncut(budget.open(overloaded));
  const behindRoom = budget.take(behind, 100);
  budget.close(gone);
  assert.equal(budget.waiting, 1);
  budget.close(full);
  assert.equal(await state(behindRoom), "taken");
  assert.equal(budget.used, 100);
  budget.close(behind);
  budget.close(oldest);
});

test("a request over its share is cut when one within its share has waited half the wait", async () => {
  const budget = new ByteBudget(1000, 1000, 400);
  const cuts: string[] = [];
  const oldest = uncut(budget.open(overloaded));
  const hog = budget.open(overloaded);
  hog.started?.(() => cuts.push("hog"));
  const fair = budget.open(overloaded);
  fair.started?.(() => cuts.push("fair"));
  const small = uncut(budget.open(overloaded));
  // While nobody waited, hog took 700 and fair 250, its share (1000 / 4 readers).
  budget.take(hog, 700);
  budget.take(fair, 250);
  const started = Date.now();
  const room = budget.take(small, 200);
  assert.equal(await state(room, 100), "waiting");
  assert.equal(await state(room, 1000), "taken");
  const waited = Date.now() - started;
  assert.ok(waited >= 190 && waited < 390, `taken after ${waited} ms`);
  assert.deepEqual(cuts, ["hog"], "only the request over its share, and only once");
  assert.equal(hog.held, 0);
  assert.equal(budget.used, 450);
  assert.equal(budget.reading, 3);
  budget.close(hog);
  assert.equal(budget.used, 450, "closing a request that was cut gives back nothing twice");
  for (const hold of [oldest, fair, small]) budget.close(hold);
});

test("nobody is cut when that would not make room, nor the oldest reader, nor for a request over its share", async () => {
  const budget = new ByteBudget(1000, 2000, 100);
  const first = uncut(budget.open(overloaded));
  const oldest = uncut(budget.open(overloaded));
  const over = uncut(budget.open(overloaded));
  const large = uncut(budget.open(overloaded));
  const small = uncut(budget.open(overloaded));
  budget.take(first, 1500);
  budget.take(over, 400);
  // Read, and being stored: its 1500 bytes now count against the others' room until Redis answers.
  budget.doneReading(first);
  budget.take(oldest, 900);
  // The share is 1000 / 4 readers = 250. `large` asks for more than its share: it cuts nobody.
  assert.equal(await state(budget.take(large, 500), 1000), `refused ${ErrorCode.Overloaded}`);
  // `small` asks within its share, but 1500 + 200 would not fit even with `over` (400) cut.
  assert.equal(await state(budget.take(small, 200), 1000), `refused ${ErrorCode.Overloaded}`);
  assert.equal(budget.used, 2800);
  for (const hold of [first, oldest, over, large, small]) budget.close(hold);
  assert.equal(budget.used, 0);
});

test("half-read bodies never block each other: 200 random uploads all finish, memory bounded", async () => {
  const capacity = 10_000;
  const limit = 4_000;
  const budget = new ByteBudget(capacity, limit, 60_000);
  let seed = 42;
  const random = (n: number) => {
    seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
    return seed % n;
  };
  let peak = 0;
  const upload = async () => {
    const hold = uncut(budget.open(overloaded));
    let left = 1 + random(limit);
    while (left > 0) {
      const chunk = Math.min(left, 1 + random(1500));
      await budget.take(hold, chunk);
      peak = Math.max(peak, budget.used);
      left -= chunk;
      await tick();
    }
    budget.doneReading(hold);
    // Being stored: a few turns of the event loop.
    for (let i = random(5); i >= 0; i--) await tick();
    budget.close(hold);
  };
  const uploads: Promise<void>[] = [];
  for (let i = 0; i < 200; i++) {
    uploads.push(upload());
    if (random(3) === 0) await tick();
  }
  await Promise.all(uploads);
  assert.equal(budget.used, 0);
  assert.equal(budget.waiting, 0);
  assert.ok(peak <= capacity + limit, `peak ${peak}`);
  assert.ok(peak > capacity, "the oldest reader did use its overdraft");
});
