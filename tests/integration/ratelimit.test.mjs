// Rate limiting (issue #3, section 3) end to end: rateLimit.maxMessagesPerMinute
// per client over windowMs (the seed's "Rate limit exceeded: Too many messages
// sent" with retry_after_ms), per-operation limits independent of each other,
// the 1008 disconnect past disconnectAfter x limit, and maxConnections per IP
// refused at the upgrade with 429 and Retry-After.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { cleanup, connect, sleep } from '../helpers/server.mjs';
import { RATE_LIMITED_MESSAGE, drainUntilClose, rawUpgrade, startServers } from '../helpers/auth.mjs';

const T = { timeout: 30000 };
const LIMIT = 5;
const WINDOW = 60000;

let msgs;  // maxMessagesPerMinute 5 per 60 s, disconnectAfter default (2)
let msgs3; // same with disconnectAfter 3
let fast;  // maxMessagesPerMinute 2 per 1000 ms
let ops;   // publish 3, subscribe 4 per 60 s; no message limit
let conns; // maxConnections 2 per IP

before(async () => {
  [msgs, msgs3, fast, ops, conns] = await startServers([
    { config: { rateLimit: { maxMessagesPerMinute: LIMIT, windowMs: WINDOW } } },
    { config: { rateLimit: { maxMessagesPerMinute: LIMIT, windowMs: WINDOW, disconnectAfter: 3 } } },
    { config: { rateLimit: { maxMessagesPerMinute: 2, windowMs: 1000 } } },
    { config: { rateLimit: { publish: 3, subscribe: 4, windowMs: WINDOW } } },
    { config: { rateLimit: { maxConnections: 2 } } },
  ]);
}, { timeout: 60000 });

after(async () => {
  cleanup();
  const results = await Promise.allSettled([msgs, msgs3, fast, ops, conns].map((s) => s?.stop()));
  for (const r of results) if (r.status === 'rejected') throw r.reason;
}, { timeout: 30000 });

/**
 * Asserts `msg` is the exact rate_limited error for `id` with a positive
 * integer retry_after_ms of at most `maxRetry`; returns retry_after_ms.
 */
function assertLimited(msg, id, maxRetry = WINDOW) {
  assert.deepEqual(Object.keys(msg ?? {}).sort(), ['code', 'id', 'message', 'retry_after_ms', 'type'],
    JSON.stringify(msg));
  const { retry_after_ms: retry, ...rest } = msg;
  assert.deepEqual(rest, { type: 'error', id, code: 'rate_limited', message: RATE_LIMITED_MESSAGE });
  assert.ok(Number.isInteger(retry) && retry > 0 && retry <= maxRetry, `retry_after_ms ${retry}`);
  return retry;
}

const sub = (channel, id) => ({ type: 'subscribe', channel, id });
const pub = (channel, id) => ({ type: 'publish', channel, data: id, id });
const unsub = (channel, id) => ({ type: 'unsubscribe', channel, id });

describe('maxMessagesPerMinute 5 per windowMs 60000', () => {
  it('five commands pass, the sixth gets rate_limited with retry_after_ms', T, async () => {
    const c = await connect(msgs.url);
    for (let id = 1; id <= LIMIT; id++) {
      assert.deepEqual(await c.request(sub(`r${id}`, id)), { type: 'ack', id });
    }
    assertLimited(await c.request(sub('r6', 6)), 6);
    assertLimited(await c.request(pub('r1', 7)), 7);
    assert.equal(c.closeInfo, null, 'a limited command does not close the connection');
    await c.close();
  });

  it('every kind of command counts (subscribe, unsubscribe, publish)', T, async () => {
    const c = await connect(msgs.url);
    assert.deepEqual(await c.request(sub('k', 1)), { type: 'ack', id: 1 });
    assert.deepEqual(await c.request(unsub('k', 2)), { type: 'ack', id: 2 });
    assert.deepEqual(await c.request(pub('k', 3)), { type: 'ack', id: 3, delivered: 0 });
    assert.deepEqual(await c.request(sub('k', 4)), { type: 'ack', id: 4 });
    assert.deepEqual(await c.request(unsub('k', 5)), { type: 'ack', id: 5 });
    assertLimited(await c.request(pub('k', 6)), 6);
    assertLimited(await c.request(unsub('k', 7)), 7);
    await c.close();
  });

  it('a limited publish is not delivered', T, async () => {
    const [listener, c] = await Promise.all([connect(msgs.url), connect(msgs.url)]);
    assert.deepEqual(await listener.request(sub('quiet', 1)), { type: 'ack', id: 1 });
    for (let id = 1; id <= LIMIT; id++) {
      assert.deepEqual(await c.request(pub('elsewhere', id)), { type: 'ack', id, delivered: 0 });
    }
    assertLimited(await c.request(pub('quiet', 6)), 6);
    await listener.expectNothing(300);
    await Promise.all([listener.close(), c.close()]);
  });

  it('the limit is per client: another connection has its own budget', T, async () => {
    const [a, b] = await Promise.all([connect(msgs.url), connect(msgs.url)]);
    for (let id = 1; id <= LIMIT; id++) assert.deepEqual(await a.request(sub('p', id)), { type: 'ack', id });
    assertLimited(await a.request(sub('p', 6)), 6);
    for (let id = 1; id <= LIMIT; id++) assert.deepEqual(await b.request(sub('p', id)), { type: 'ack', id });
    assertLimited(await b.request(sub('p', 6)), 6);
    await Promise.all([a.close(), b.close()]);
  });

  it('staying under disconnectAfter x limit keeps the connection open', T, async () => {
    const c = await connect(msgs.url);
    const total = 2 * LIMIT - 1; // 9 commands: 5 pass, 4 refused
    for (let id = 1; id <= total; id++) c.send(sub('u', id));
    const replies = await c.nextN(total);
    replies.slice(0, LIMIT).forEach((m, i) => assert.deepEqual(m, { type: 'ack', id: i + 1 }));
    replies.slice(LIMIT).forEach((m, i) => assertLimited(m, LIMIT + i + 1));
    await c.expectNothing(300);
    assert.equal(c.closeInfo, null);
    await c.close();
  });

  it('a client that keeps going past disconnectAfter (2) x limit is closed with 1008', T, async () => {
    const c = await connect(msgs.url);
    for (let id = 1; id <= 40; id++) c.send(sub('flood', id));
    const { messages, close } = await drainUntilClose(c, 5000);
    assert.deepEqual(close, { code: 1008, reason: 'Rate limit exceeded' });
    messages.slice(0, LIMIT).forEach((m, i) => assert.deepEqual(m, { type: 'ack', id: i + 1 }));
    const refused = messages.slice(LIMIT);
    refused.forEach((m, i) => assertLimited(m, LIMIT + i + 1));
    assert.ok(refused.length >= LIMIT && refused.length <= 2 * LIMIT + 1,
      `${refused.length} refusals before the close (expected past 2 x ${LIMIT} commands, at most ${2 * LIMIT + 1} refusals)`);
  });
});

describe('rateLimit.disconnectAfter 3', () => {
  it('14 commands stay open; flooding on closes with 1008', T, async () => {
    const c = await connect(msgs3.url);
    const first = 3 * LIMIT - 1;
    for (let id = 1; id <= first; id++) c.send(sub('d', id));
    const replies = await c.nextN(first);
    replies.slice(0, LIMIT).forEach((m, i) => assert.deepEqual(m, { type: 'ack', id: i + 1 }));
    replies.slice(LIMIT).forEach((m, i) => assertLimited(m, LIMIT + i + 1));
    await c.expectNothing(300);
    assert.equal(c.closeInfo, null, `open after ${first} commands with disconnectAfter 3`);
    for (let id = first + 1; id <= first + 30; id++) c.send(sub('d', id));
    const { messages, close } = await drainUntilClose(c, 5000);
    assert.deepEqual(close, { code: 1008, reason: 'Rate limit exceeded' });
    messages.forEach((m, i) => assertLimited(m, first + i + 1));
    const refused = first - LIMIT + messages.length;
    assert.ok(refused >= 2 * LIMIT && refused <= 3 * LIMIT + 1, `${refused} refusals before the close`);
  });
});

describe('retry_after_ms is honest (2 per windowMs 1000)', () => {
  it('after retry_after_ms the next command passes', T, async () => {
    const c = await connect(fast.url);
    assert.deepEqual(await c.request(sub('f', 1)), { type: 'ack', id: 1 });
    assert.deepEqual(await c.request(sub('f', 2)), { type: 'ack', id: 2 });
    const retry = assertLimited(await c.request(sub('f', 3)), 3, 1000);
    await sleep(retry + 100);
    assert.deepEqual(await c.request(sub('f', 4)), { type: 'ack', id: 4 });
    await c.close();
  });
});

describe('per-operation limits (publish 3, subscribe 4 per windowMs)', () => {
  it('the fourth publish is limited; subscribes are counted separately', T, async () => {
    const c = await connect(ops.url);
    for (let id = 1; id <= 3; id++) {
      assert.deepEqual(await c.request(pub('ops', id)), { type: 'ack', id, delivered: 0 });
    }
    assertLimited(await c.request(pub('ops', 4)), 4);
    for (let id = 5; id <= 8; id++) assert.deepEqual(await c.request(sub(`s${id}`, id)), { type: 'ack', id });
    assertLimited(await c.request(sub('s9', 9)), 9);
    assertLimited(await c.request(pub('ops', 10)), 10);
    for (let id = 11; id <= 16; id++) {
      assert.deepEqual(await c.request(unsub('s5', id)), { type: 'ack', id }, 'unsubscribe has no op limit');
    }
    await c.close();
  });

  it('subscribes first do not use up the publish budget', T, async () => {
    const c = await connect(ops.url);
    for (let id = 1; id <= 4; id++) assert.deepEqual(await c.request(sub(`t${id}`, id)), { type: 'ack', id });
    assertLimited(await c.request(sub('t5', 5)), 5);
    for (let id = 6; id <= 8; id++) {
      assert.deepEqual(await c.request(pub('other', id)), { type: 'ack', id, delivered: 0 });
    }
    assertLimited(await c.request(pub('other', 9)), 9);
    await c.close();
  });
});

describe('maxConnections 2 per IP', () => {
  /** Asserts an upgrade is refused with 429 and a Retry-After in whole seconds. */
  async function assertTooMany(what) {
    const res = await rawUpgrade(conns.port);
    assert.equal(res.status, 429, `${what}: status`);
    assert.match(res.headers['retry-after'] ?? '', /^[0-9]+$/, `${what}: Retry-After`);
    assert.ok(Number(res.headers['retry-after']) >= 1, `${what}: Retry-After ${res.headers['retry-after']}`);
    assert.equal(res.headers['sec-websocket-accept'], undefined);
  }

  /** Connects, retrying while the server still counts a closed connection (bounded). */
  async function connectWhenFree(tries = 50) {
    for (let i = 0; ; i++) {
      try {
        return await connect(conns.url);
      } catch (err) {
        if (i >= tries || !/upgrade refused: 429/.test(err.message)) throw err;
        await sleep(100);
      }
    }
  }

  it('the third upgrade gets 429 with Retry-After; after a close a new one is accepted', T, async () => {
    const a = await connectWhenFree();
    const b = await connectWhenFree();
    await assertTooMany('third');
    await assert.rejects(connect(conns.url), /upgrade refused: 429/);
    await assertTooMany('again (refusals hold no slot)');
    assert.deepEqual(await a.request(sub('alive', 1)), { type: 'ack', id: 1 }, 'the first two still work');
    assert.deepEqual(await b.request(sub('alive', 1)), { type: 'ack', id: 1 });

    await a.close();
    const c = await connectWhenFree();
    await assertTooMany('full again');
    await Promise.all([b.close(), c.close()]);
    const d = await connectWhenFree();
    const e = await connectWhenFree();
    await assertTooMany('full with new clients');
    await Promise.all([d.close(), e.close()]);
  });

  it('an abruptly dropped connection frees its slot too', T, async () => {
    const a = await connectWhenFree();
    const b = await connectWhenFree();
    await assertTooMany('full');
    a.terminate();
    const c = await connectWhenFree();
    await Promise.all([b.close(), c.close()]);
  });
});
