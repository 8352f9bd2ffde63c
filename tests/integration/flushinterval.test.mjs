// flushInterval (issue #6, the CPU/latency trade of scenario B): a worker
// flushes at most once per interval. The first message after a quiet
// interval goes out at once; messages that come within the interval wait for
// the next flush and share its writes (one system call per connection for
// all of them, which GET /stats' socketWrites shows); nothing is lost or
// reordered, with one worker or several, and a stop while a flush is held
// still delivers everything before the close 1001.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { cleanup, connect, sleep, startServer, withTimeout } from '../helpers/server.mjs';

const INTERVAL = 1000; // the longest allowed: the holding is then far above any scheduling noise
const T = { timeout: 30000 };

let one;  // workers: 1, so every write is on the one flusher being measured
let two;  // workers: 2

before(async () => {
  [one, two] = await Promise.all([
    startServer({ config: { flushInterval: INTERVAL, workers: 1 } }),
    startServer({ config: { flushInterval: INTERVAL, workers: 2 } }),
  ]);
}, { timeout: 30000 });

after(async () => {
  cleanup();
  const results = await Promise.allSettled([one?.stop(), two?.stop()]);
  for (const r of results) if (r.status === 'rejected') throw r.reason;
}, { timeout: 30000 });

/** GET /stats' write counters of `srv`. */
async function writes(srv) {
  const res = await fetch(`http://127.0.0.1:${srv.port}/stats`, { signal: AbortSignal.timeout(5000) });
  assert.equal(res.status, 200);
  const { totals } = await res.json();
  return { calls: totals.socketWrites, frames: totals.framesWritten };
}

async function subscribe(c, channel) {
  assert.deepEqual(await c.request({ type: 'subscribe', channel, id: 900 }, 3 * INTERVAL), { type: 'ack', id: 900 });
}

describe('flushInterval', () => {
  it('holds the flushes that come within the interval and writes their messages together', T, async () => {
    const [sub, pub] = await Promise.all([connect(one.url), connect(one.url)]);
    await subscribe(sub, 'paced');
    await sleep(INTERVAL + 200);
    const base = await writes(one); // its reply is a flush: a new interval starts with it
    await sleep(INTERVAL + 200);

    // Quiet for a whole interval: this one is not held.
    const t0 = Date.now();
    pub.send({ type: 'publish', channel: 'paced', data: { n: 0 }, id: 0 });
    assert.deepEqual((await sub.next(INTERVAL / 2)).data, { n: 0 });
    assert.ok(Date.now() - t0 < INTERVAL / 2, 'the first message after a quiet interval is not held');

    // Within the interval that the flush above started: held, then written together.
    const t1 = Date.now();
    const N = 10;
    for (let i = 1; i <= N; i++) {
      pub.send({ type: 'publish', channel: 'paced', data: { n: i }, id: i });
      await sleep(20);
    }
    const rest = await sub.nextN(N, 3 * INTERVAL);
    const held = Date.now() - t1;
    assert.deepEqual(rest.map((m) => m.data.n), Array.from({ length: N }, (_, i) => i + 1));
    assert.ok(held >= INTERVAL / 2, `messages published within the interval came after ${held} ms`);
    const acks = await pub.nextN(N + 1, 3 * INTERVAL);
    assert.deepEqual(acks, Array.from({ length: N + 1 }, (_, i) => ({ type: 'ack', id: i, delivered: 1 })));

    // 2 (N + 1) frames plus the first GET's reply; unpaced they would take as
    // many writes, held they take one per connection and flush: ~5.
    const now = await writes(one);
    const frames = now.frames - base.frames;
    const calls = now.calls - base.calls;
    assert.ok(frames >= 2 * (N + 1), `framesWritten grew by ${frames}`);
    assert.ok(calls <= 8, `socketWrites grew by ${calls} for ${frames} frames`);
    await Promise.all([sub.close(), pub.close()]);
  });

  it('loses and reorders nothing with two workers, every subscriber gets every message', T, async () => {
    const subs = await Promise.all(Array.from({ length: 6 }, () => connect(two.url)));
    for (const s of subs) await subscribe(s, 'fan');
    const pub = await connect(two.url);
    const N = 50;
    for (let i = 0; i < N; i++) {
      pub.send({ type: 'publish', channel: 'fan', data: { n: i }, id: i });
      if (i % 10 === 9) await sleep(150); // spread over more than one interval
    }
    const acks = await pub.nextN(N, 5 * INTERVAL);
    assert.deepEqual(acks, Array.from({ length: N }, (_, i) => ({ type: 'ack', id: i, delivered: 6 })));
    for (const s of subs) {
      const got = await s.nextN(N, 5 * INTERVAL);
      assert.deepEqual(got.map((m) => m.data.n), Array.from({ length: N }, (_, i) => i));
    }
    await Promise.all([...subs, pub].map((c) => c.close(1000, '', 3 * INTERVAL)));
  });

  it('a stop while a flush is held delivers it before the close 1001', T, async () => {
    const srv = await startServer({ config: { flushInterval: INTERVAL, workers: 2 } });
    try {
      const sub = await connect(srv.url);
      await subscribe(sub, 'last');
      const pub = await connect(srv.url);
      // The subscribe's ack started an interval: these are held when the signal comes.
      for (let i = 0; i < 5; i++) pub.send({ type: 'publish', channel: 'last', data: { seq: i }, id: i });
      await sleep(100);
      const result = await srv.stop({ signal: 'SIGTERM', timeout: 10000 });
      assert.equal(result.code, 0);
      const info = await withTimeout(sub.closed, 5000, 'close 1001');
      assert.equal(info.code, 1001);
      assert.deepEqual(sub.queue.map((item) => item.json.data.seq), [0, 1, 2, 3, 4]);
    } finally {
      await srv.stop().catch(() => {});
    }
  });
});
