import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { WorkQueue } from "./workqueue.js";

describe("WorkQueue", () => {
  it("holds a waiting key once however often it is added", async () => {
    const queue = new WorkQueue();
    queue.add("a");
    queue.add("b");
    queue.add("a");
    assert.equal(queue.depth, 2);
    assert.equal(await queue.get(), "a");
    assert.equal(await queue.get(), "b");
    assert.equal(queue.depth, 0);
  });

  it("never hands a key being processed to a second worker, and runs it again after if it was re-added", async () => {
    const queue = new WorkQueue();
    queue.add("a");
    const first = await queue.get();
    queue.add("a");
    assert.equal(queue.depth, 0, "not handed out while in flight");
    let second: string | undefined;
    const waiting = queue.get().then((k) => {
      second = k;
    });
    await new Promise((r) => setTimeout(r, 10));
    assert.equal(second, undefined);
    queue.done(first as string);
    await waiting;
    assert.equal(second, "a");
  });

  it("backs off exponentially per key and forgets on success", () => {
    const queue = new WorkQueue({ baseDelayMs: 10, maxDelayMs: 35 });
    assert.equal(queue.addRateLimited("a"), 10);
    assert.equal(queue.addRateLimited("a"), 20);
    assert.equal(queue.addRateLimited("a"), 35);
    assert.equal(queue.addRateLimited("b"), 10);
    queue.forget("a");
    assert.equal(queue.addRateLimited("a"), 10);
    queue.shutDown();
  });

  it("delivers a rate-limited key after its delay", async () => {
    const queue = new WorkQueue({ baseDelayMs: 30 });
    // The queue's timers do not hold the process open; this test must.
    const keepAlive = setTimeout(() => {}, 1000);
    const start = Date.now();
    queue.addRateLimited("a");
    assert.equal(await queue.get(), "a");
    assert.ok(Date.now() - start >= 25);
    clearTimeout(keepAlive);
  });

  it("releases waiting workers on shutdown and takes no more keys", async () => {
    const queue = new WorkQueue();
    const waiting = queue.get();
    queue.shutDown();
    assert.equal(await waiting, undefined);
    queue.add("a");
    assert.equal(await queue.get(), undefined);
  });
});
