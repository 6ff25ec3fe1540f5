import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Slots } from "./slots.js";

const MiB = 1024 * 1024;

/** An entry of `bytes` bytes in all (its id included). */
function entry(id: string, bytes: number) {
  return { id, fields: [Buffer.alloc(bytes - id.length)] };
}

describe("delivery slots and the bytes they hold", () => {
  test("the first read fetches one entry; then as many as fit if each weighs as much as the largest seen", () => {
    const slots = new Slots(100, 16 * MiB);
    assert.equal(slots.readable(), 1, "nothing is known of the entries yet");
    slots.take(entry("a", 1024));
    assert.equal(slots.readable(), 99, "small entries: the free slots");
    slots.release("a");
    slots.take(entry("big", 6 * MiB));
    assert.equal(slots.readable(), 1, "10 MiB left: one more of 6 MiB");
    slots.take(entry("big-2", 6 * MiB));
    assert.equal(slots.readable(), 0, "4 MiB left: wait");
    assert.equal(slots.bytes, 12 * MiB);
    slots.release("big");
    slots.release("big-2");
    assert.equal(slots.readable(), 2, "nothing in flight: two of 6 MiB fit in 16");
  });

  test("an entry larger than the whole budget still goes, alone", () => {
    const slots = new Slots(100, 16 * MiB);
    slots.take(entry("huge", 40 * MiB));
    assert.equal(slots.readable(), 0);
    slots.release("huge");
    assert.equal(slots.readable(), 1);
    slots.take(entry("small", 10));
    assert.equal(slots.readable(), 0, "the huge one is still the guess, and nothing else fits beside it");
  });

  test("a large entry keeps reads careful for the next 64 entries, then is forgotten", () => {
    const slots = new Slots(100, 16 * MiB);
    slots.take(entry("big", 8 * MiB));
    slots.release("big");
    for (let i = 0; i < 63; i++) {
      slots.take(entry(`s${i}`, 1000));
      slots.release(`s${i}`);
    }
    assert.equal(slots.readable(), 2);
    slots.take(entry("s63", 1000));
    slots.release("s63");
    assert.equal(slots.readable(), 100);
  });

  test("the next read waits for room, then briefly for more, and fetches what fits", async () => {
    const slots = new Slots(100, 16 * MiB);
    const closing = new AbortController();
    assert.equal(await slots.nextRead(32, 10, closing.signal), 1, "the first read: one");
    slots.take(entry("big", 6 * MiB));
    slots.take(entry("big-2", 6 * MiB));
    let count: number | undefined;
    const next = slots.nextRead(32, 10, closing.signal).then((n) => {
      count = n;
    });
    await new Promise((resolve) => setTimeout(resolve, 30));
    assert.equal(count, undefined, "no room for a third: it waits");
    slots.release("big");
    await next;
    assert.equal(count, 1, "room for one more of 6 MiB beside the other");
    closing.abort();
    slots.take(entry("big-3", 6 * MiB));
    assert.equal(await slots.nextRead(32, 10, closing.signal), 0, "closing: nothing");
  });

  test("an entry already in flight is not taken twice; waitUntil wakes on a release", async () => {
    const slots = new Slots(2, 16 * MiB);
    assert.ok(slots.take(entry("a", 10)));
    assert.equal(slots.take(entry("a", 10)), false);
    slots.take(entry("b", 10));
    assert.equal(slots.readable(), 0, "no free slot");
    const closing = new AbortController();
    let woken = false;
    const waiting = slots
      .waitUntil(() => slots.readable() > 0, closing.signal)
      .then(() => {
        woken = true;
      });
    await Promise.resolve();
    assert.equal(woken, false);
    slots.release("a");
    await waiting;
    assert.ok(woken);
    assert.equal(slots.used, 1);
    assert.equal(slots.bytes, 10);
  });
});
