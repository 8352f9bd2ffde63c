// Graceful shutdown (issue #2, section 6): on SIGTERM/SIGINT every client gets
// close 1001, messages accepted before the signal are delivered before that
// close, and the process exits 0 within the shutdown timeout even when a
// client does not read.

import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { cleanup, connect, sleep, startServer, withTimeout } from '../helpers/server.mjs';
import { OP, RawClient } from '../helpers/raw.mjs';

const servers = [];

after(async () => {
  cleanup();
  const results = await Promise.allSettled(servers.map((s) => s.stop()));
  for (const r of results) if (r.status === 'rejected') throw r.reason;
}, { timeout: 30000 });

async function start(config) {
  const s = await startServer({ config });
  servers.push(s);
  return s;
}

/** Subscribes a ws client and asserts the ack. */
async function wsSubscriber(srv, channel) {
  const c = await connect(srv.url);
  assert.deepEqual(await c.request({ type: 'subscribe', channel, id: 1 }), { type: 'ack', id: 1 });
  return c;
}

/** Subscribes a raw client and asserts the ack. */
async function rawSubscriber(srv, channel) {
  const c = await RawClient.connect(srv.port);
  c.sendJSON({ type: 'subscribe', channel, id: 1 });
  assert.deepEqual(await c.nextMessage(), { type: 'ack', id: 1 });
  return c;
}

/** Publishes `n` messages with `pad` bytes each and waits for every ack (delivered = subs). */
async function publishAcked(pub, channel, n, pad, subs) {
  const filler = 'p'.repeat(pad);
  for (let i = 0; i < n; i++) pub.send({ type: 'publish', channel, data: { seq: i, filler }, id: i });
  const acks = await pub.nextN(n, 20000);
  assert.deepEqual(acks, Array.from({ length: n }, (_, i) => ({ type: 'ack', id: i, delivered: subs })));
}

/** Checks a ws client got messages seq 0..n-1 in order and then close 1001. */
async function assertDrainedThen1001(c, channel, n) {
  const info = await withTimeout(c.closed, 10000, 'close 1001');
  assert.equal(info.code, 1001, `close ${info.code} "${info.reason}"`);
  const seqs = c.queue.map((item) => {
    assert.equal(item.json.type, 'message');
    assert.equal(item.json.channel, channel);
    return item.json.data.seq;
  });
  assert.deepEqual(seqs, Array.from({ length: n }, (_, i) => i), 'every message before the close');
}

/** Checks a raw client's frames: seq 0..n-1 in order, then a close 1001 as the last frame. */
function assertRawDrainedThen1001(c, channel, n) {
  const frames = c.frames.splice(0).filter((f) => f.opcode !== OP.PING);
  assert.ok(frames.length > 0, 'frames arrived');
  const last = frames[frames.length - 1];
  assert.equal(last.opcode, OP.CLOSE, 'the last frame is a close');
  assert.equal(last.code, 1001, `close ${last.code} "${last.reason}"`);
  const seqs = frames.slice(0, -1).map((f) => {
    assert.equal(f.opcode, OP.TEXT);
    const m = JSON.parse(f.text);
    assert.equal(m.channel, channel);
    return m.data.seq;
  });
  assert.equal(seqs.length, n, `raw client got ${seqs.length} of ${n} messages before the close`);
  assert.deepEqual(seqs, Array.from({ length: n }, (_, i) => i));
}

describe('graceful shutdown', () => {
  it('SIGTERM: queued messages are flushed, every client gets 1001, exit 0 in time', { timeout: 60000 }, async () => {
    const SHUTDOWN = 3000;
    const srv = await start({ shutdownTimeout: SHUTDOWN });
    const subs = await Promise.all([1, 2, 3].map(() => wsSubscriber(srv, 'news')));
    // A subscriber that is not reading when the signal comes: ~2 MB wait in
    // its socket buffers and the server's send queue (under the 4 MiB cap).
    const lag = await rawSubscriber(srv, 'news');
    lag.pause();
    const pub = await connect(srv.url);
    const N = 128;
    await publishAcked(pub, 'news', N, 16 * 1024, 4);

    const stopping = srv.stop({ signal: 'SIGTERM', timeout: 10000 });
    await sleep(100);
    lag.autoCloseEcho = true;
    lag.resume();
    const result = await stopping;

    assert.equal(result.code, 0);
    assert.ok(result.elapsedMs < SHUTDOWN + 1500, `exit after ${result.elapsedMs} ms`);
    for (const c of subs) await assertDrainedThen1001(c, 'news', N);
    const pubClose = await withTimeout(pub.closed, 5000, 'publisher close');
    assert.equal(pubClose.code, 1001);
    assert.deepEqual(pub.queue, [], 'the publisher got nothing but its acks');
    await lag.waitEnd(5000);
    assertRawDrainedThen1001(lag, 'news', N);
  });

  it('SIGTERM with a client that never reads: exit 0 within shutdownTimeout', { timeout: 60000 }, async () => {
    const SHUTDOWN = 1000;
    const srv = await start({ shutdownTimeout: SHUTDOWN, maxQueuedBytes: 64 * 1024 * 1024 });
    const stuck = await rawSubscriber(srv, 'jam');
    stuck.pause();
    const ok = await wsSubscriber(srv, 'other');
    const pub = await connect(srv.url);
    // ~10 MB: more than the kernel buffers hold, so the server still has bytes
    // queued for `stuck` when the signal comes.
    for (let b = 0; b < 10; b++) {
      const filler = 'j'.repeat(8 * 1024);
      for (let i = 0; i < 128; i++) pub.send({ type: 'publish', channel: 'jam', data: { filler }, id: i });
      const acks = await pub.nextN(128, 20000);
      assert.ok(acks.every((a) => a.type === 'ack' && a.delivered === 1), JSON.stringify(acks[0]));
    }
    const result = await srv.stop({ signal: 'SIGTERM', timeout: 10000 });
    assert.equal(result.code, 0);
    assert.ok(result.elapsedMs < SHUTDOWN + 2000, `exit after ${result.elapsedMs} ms (shutdownTimeout ${SHUTDOWN})`);
    const info = await withTimeout(ok.closed, 5000, 'close of the reading client');
    assert.equal(info.code, 1001);
    stuck.destroy();
  });

  it('SIGINT is graceful too', { timeout: 30000 }, async () => {
    const srv = await start({});
    const a = await wsSubscriber(srv, 'int');
    const pub = await connect(srv.url);
    await publishAcked(pub, 'int', 5, 10, 1);
    const result = await srv.stop({ signal: 'SIGINT', timeout: 10000 });
    assert.equal(result.code, 0);
    await assertDrainedThen1001(a, 'int', 5);
    assert.equal((await withTimeout(pub.closed, 5000, 'publisher close')).code, 1001);
  });

  it('an idle server with no clients exits 0 promptly', { timeout: 30000 }, async () => {
    const srv = await start({});
    const result = await srv.stop({ signal: 'SIGTERM', timeout: 10000 });
    assert.equal(result.code, 0);
    assert.ok(result.elapsedMs < 2000, `exit after ${result.elapsedMs} ms`);
  });
});
