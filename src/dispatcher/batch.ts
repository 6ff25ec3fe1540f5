/**
 * Gathers single requests into one call: those made within one turn of the event loop, and while a
 * call is out, all those made until it returns (as a database's group commit does). The dispatcher
 * acknowledges through it: deliveries finish many at a time under load, and one script call for all of
 * them costs Redis and the dispatcher far less than one call each; each write to Redis also wakes it.
 * At low load a request goes out in the next turn, alone.
 */
export type Batched<T, R> = (item: T) => Promise<R>;

/**
 * `run` gets the items gathered since the last call (at most `maxBatch`, in the order they came) and
 * returns one result per item, in the same order. When it fails, every item of that call fails with it.
 */
export function createBatcher<T, R>(run: (items: T[]) => Promise<R[]>, maxBatch: number): Batched<T, R> {
  let queue: { item: T; resolve: (result: R) => void; reject: (err: unknown) => void }[] = [];
  let scheduled = false;
  let calls = 0;

  const send = (batch: typeof queue) => {
    let call: Promise<R[]>;
    calls++;
    try {
      call = run(batch.map((b) => b.item));
    } catch (err) {
      call = Promise.reject(err);
    }
    call
      .finally(() => {
        calls--;
        if (calls === 0 && queue.length > 0) schedule();
      })
      .then(
        (results) => {
          if (results.length !== batch.length) {
            const err = new Error(`batch of ${batch.length} returned ${results.length} results`);
            for (const b of batch) b.reject(err);
            return;
          }
          for (let i = 0; i < batch.length; i++) batch[i]?.resolve(results[i] as R);
        },
        (err) => {
          for (const b of batch) b.reject(err);
        },
      );
  };

  // After the poll phase: every delivery that finished in this turn is in the queue by then.
  const flush = () => {
    scheduled = false;
    if (calls > 0) return;
    const batch = queue;
    queue = [];
    if (batch.length > 0) send(batch);
  };
  const schedule = () => {
    if (scheduled) return;
    scheduled = true;
    setImmediate(flush);
  };

  return (item) =>
    new Promise<R>((resolve, reject) => {
      queue.push({ item, resolve, reject });
      if (queue.length >= maxBatch) {
        const batch = queue;
        queue = [];
        send(batch);
      } else if (calls === 0) {
        schedule();
      }
    });
}
