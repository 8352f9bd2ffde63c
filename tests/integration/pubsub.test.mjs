// Pub/sub across several clients (issue #2, sections 3 and 4): acks with ids,
// exact `delivered` counts, exact message envelopes, data forwarded byte for
// byte, unsubscribe, per-publisher order and channel independence.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { buildFrame, RawClient } from '../helpers/raw.mjs';
import { cleanup, connect, rawMember, startServer } from '../helpers/server.mjs';

const T = { timeout: 20000 };

let srv;

before(async () => { srv = await startServer(); }, { timeout: 15000 });

after(async () => {
  cleanup();
  await srv?.stop();
}, { timeout: 15000 });

/** Opens `n` ws clients. */
async function clients(n) {
  return Promise.all(Array.from({ length: n }, () => connect(srv.url)));
}

/** Subscribes `c` to `channel` with `id` and asserts the exact ack. */
async function subscribe(c, channel, id) {
  assert.deepEqual(await c.request({ type: 'subscribe', channel, id }), { type: 'ack', id });
}

/** Closes every client with a close handshake. */
async function closeAll(list) {
  await Promise.all(list.map((c) => c.close()));
}

/** Orders a batch of messages by type so a test can compare them regardless of arrival order. */
function byType(msgs) {
  return [...msgs].sort((a, b) => a.type.localeCompare(b.type));
}

describe('pub/sub across clients', () => {
  it('subscribe acks echo the id; publish reaches every subscriber with an exact envelope', T, async () => {
    const [a, b, c] = await clients(3);
    await subscribe(a, 'chat', 1);
    await subscribe(b, 'chat', 2);
    await subscribe(c, 'chat', 3);

    c.send({ type: 'publish', channel: 'chat', data: { text: 'hi', n: 1 }, id: 4 });
    const expected = { type: 'message', channel: 'chat', data: { text: 'hi', n: 1 } };
    assert.deepEqual(byType(await c.nextN(2)), [{ type: 'ack', id: 4, delivered: 3 }, expected],
      'the subscribed publisher gets its ack and the message');
    assert.deepEqual(await a.next(), expected);
    assert.deepEqual(await b.next(), expected);
    await Promise.all([a.expectNothing(), b.expectNothing(), c.expectNothing()]);
    await closeAll([a, b, c]);
  });

  it('a publisher that is not subscribed is not counted and gets only its ack', T, async () => {
    const [a, b, c, pub] = await clients(4);
    await subscribe(a, 'room', 10);
    await subscribe(b, 'room', 11);
    await subscribe(c, 'room', 12);
    assert.deepEqual(await pub.request({ type: 'publish', channel: 'room', data: [1, 'two', null], id: 13 }),
      { type: 'ack', id: 13, delivered: 3 });
    for (const s of [a, b, c]) {
      assert.deepEqual(await s.next(), { type: 'message', channel: 'room', data: [1, 'two', null] });
    }
    await pub.expectNothing();
    await closeAll([a, b, c, pub]);
  });

  it('publish to a channel without subscribers acks delivered 0', T, async () => {
    const [pub, other] = await clients(2);
    await subscribe(other, 'not-this-one', 1);
    assert.deepEqual(await pub.request({ type: 'publish', channel: 'empty:channel', data: 'x', id: 20 }),
      { type: 'ack', id: 20, delivered: 0 });
    await other.expectNothing();
    await closeAll([pub, other]);
  });

  it('publish without an id acks without an id', T, async () => {
    const [pub] = await clients(1);
    assert.deepEqual(await pub.request({ type: 'publish', channel: 'noid', data: 1 }),
      { type: 'ack', delivered: 0 });
    assert.deepEqual(await pub.request({ type: 'subscribe', channel: 'noid' }), { type: 'ack' });
    await closeAll([pub]);
  });

  it('delivers every JSON value type unchanged', T, async () => {
    const [sub, pub] = await clients(2);
    await subscribe(sub, 'types', 1);
    const values = ['"str"', '0', '-1.5e-7', 'true', 'false', 'null', '[]', '{}',
      '[[[[1]]],{"a":{"b":[]}}]', '"\\"quoted\\" \\\\ \\n \\ud83d\\ude00"', '"😀 ü"'];
    let id = 100;
    for (const v of values) {
      pub.sendRaw(`{"type":"publish","channel":"types","data":${v},"id":${id}}`);
      assert.deepEqual(await pub.next(), { type: 'ack', id, delivered: 1 }, `data ${v}`);
      const item = await sub.nextItem();
      assert.equal(rawMember(item.raw, 'data'), v, `data ${v} forwarded byte for byte`);
      assert.equal(item.json.type, 'message');
      assert.equal(item.json.channel, 'types');
      id++;
    }
    await closeAll([sub, pub]);
  });
});

describe('data bytes are forwarded unchanged', () => {
  it('big integers, decimals, literal and escaped non-ASCII keep their bytes', T, async () => {
    const [sub, pub] = await clients(2);
    await subscribe(sub, 'c', 1);
    const data = '{"n":18446744073709551616,"x":0.1,"s":"é\\u00e9"}';
    pub.sendRaw(`{"type":"publish","channel":"c","data":${data},"id":5}`);
    assert.deepEqual(await pub.next(), { type: 'ack', id: 5, delivered: 1 });
    const item = await sub.nextItem();
    const got = rawMember(item.raw, 'data');
    assert.ok(got !== undefined, `no data member in ${item.raw}`);
    assert.deepEqual(Buffer.from(got, 'utf8'), Buffer.from(data, 'utf8'));
    assert.ok(item.bytes.includes(Buffer.from(data, 'utf8')), 'the raw frame holds the exact bytes');
    assert.equal(item.json.type, 'message');
    assert.equal(item.json.channel, 'c');
    await closeAll([sub, pub]);
  });

  it('whitespace inside data is kept; whitespace around it is not part of data', T, async () => {
    const [sub, pub] = await clients(2);
    await subscribe(sub, 'ws', 1);
    const data = '{ "a" : [1, 2 ,3],\n\t"b":  1.0e+2 }';
    pub.sendRaw(`{ "type" : "publish" , "channel":"ws", "data" :  ${data}  , "id":6 }`);
    assert.deepEqual(await pub.next(), { type: 'ack', id: 6, delivered: 1 });
    const item = await sub.nextItem();
    assert.equal(rawMember(item.raw, 'data'), data);
    await closeAll([sub, pub]);
  });

  it('member order of the command does not matter', T, async () => {
    const [sub, pub] = await clients(2);
    await subscribe(sub, 'order', 1);
    pub.sendRaw('{"id":7,"data":{"z":1,"a":2},"channel":"order","type":"publish"}');
    assert.deepEqual(await pub.next(), { type: 'ack', id: 7, delivered: 1 });
    const item = await sub.nextItem();
    assert.equal(rawMember(item.raw, 'data'), '{"z":1,"a":2}');
    await closeAll([sub, pub]);
  });
});

describe('unsubscribe', () => {
  it('stops delivery to the unsubscribed client only', T, async () => {
    const [a, b, c] = await clients(3);
    await subscribe(a, 'news', 1);
    await subscribe(b, 'news', 2);
    assert.deepEqual(await b.request({ type: 'unsubscribe', channel: 'news', id: 3 }), { type: 'ack', id: 3 });
    assert.deepEqual(await c.request({ type: 'publish', channel: 'news', data: 'after', id: 4 }),
      { type: 'ack', id: 4, delivered: 1 });
    assert.deepEqual(await a.next(), { type: 'message', channel: 'news', data: 'after' });
    await b.expectNothing();
    await closeAll([a, b, c]);
  });

  it('unsubscribing the last subscriber empties the channel', T, async () => {
    const [a, pub] = await clients(2);
    await subscribe(a, 'solo', 1);
    assert.deepEqual(await pub.request({ type: 'publish', channel: 'solo', data: 1, id: 2 }),
      { type: 'ack', id: 2, delivered: 1 });
    assert.deepEqual(await a.next(), { type: 'message', channel: 'solo', data: 1 });
    assert.deepEqual(await a.request({ type: 'unsubscribe', channel: 'solo', id: 3 }), { type: 'ack', id: 3 });
    assert.deepEqual(await pub.request({ type: 'publish', channel: 'solo', data: 2, id: 4 }),
      { type: 'ack', id: 4, delivered: 0 });
    await a.expectNothing();
    await subscribe(a, 'solo', 5);
    assert.deepEqual(await pub.request({ type: 'publish', channel: 'solo', data: 3, id: 6 }),
      { type: 'ack', id: 6, delivered: 1 });
    assert.deepEqual(await a.next(), { type: 'message', channel: 'solo', data: 3 });
    await closeAll([a, pub]);
  });

  it('a closed connection is removed from its channels', T, async () => {
    const [a, b, pub] = await clients(3);
    await subscribe(a, 'gone', 1);
    await subscribe(b, 'gone', 2);
    let id = 3;
    /** Publishes until `delivered` equals `want` (3 s at most); returns the publishes made. */
    const publishUntil = async (want) => {
      const t0 = Date.now();
      let n = 0;
      let delivered;
      do {
        delivered = (await pub.request({ type: 'publish', channel: 'gone', data: 'x', id: id++ })).delivered;
        n++;
      } while (delivered !== want && Date.now() - t0 < 3000);
      assert.equal(delivered, want, `delivered count still ${delivered} after 3 s`);
      return n;
    };
    assert.deepEqual(await a.close(1000), { code: 1000, reason: '' });
    const n1 = await publishUntil(1);
    assert.deepEqual(await b.nextN(n1), Array(n1).fill({ type: 'message', channel: 'gone', data: 'x' }));
    b.terminate(); // abrupt TCP close, no close frame
    await publishUntil(0);
    await closeAll([pub]);
  });
});

describe('ordering and isolation', () => {
  it('keeps each publisher\'s messages in order, acks in order', T, async () => {
    const [s1, s2, p1, p2] = await clients(4);
    await subscribe(s1, 'seq', 1);
    await subscribe(s2, 'seq', 2);
    const N = 300;
    for (let i = 0; i < N; i++) {
      p1.send({ type: 'publish', channel: 'seq', data: { p: 1, i }, id: i });
      p2.send({ type: 'publish', channel: 'seq', data: { p: 2, i }, id: 10000 + i });
    }
    const acks1 = await p1.nextN(N, 10000);
    const acks2 = await p2.nextN(N, 10000);
    assert.deepEqual(acks1, Array.from({ length: N }, (_, i) => ({ type: 'ack', id: i, delivered: 2 })));
    assert.deepEqual(acks2, Array.from({ length: N }, (_, i) => ({ type: 'ack', id: 10000 + i, delivered: 2 })));
    for (const s of [s1, s2]) {
      const msgs = await s.nextN(2 * N, 10000);
      for (const p of [1, 2]) {
        const seq = msgs.filter((m) => m.data.p === p).map((m) => m.data.i);
        assert.deepEqual(seq, Array.from({ length: N }, (_, i) => i), `publisher ${p} order`);
      }
      await s.expectNothing(100);
    }
    await closeAll([s1, s2, p1, p2]);
  });

  // One TCP write of many publishes is handled in one loop iteration: each
  // channel's messages share a batch frame (several, as it fills; the big one
  // gets its own), and a subscriber of two channels gets them interleaved
  // exactly as published.
  it('a burst in one write arrives complete and in publish order across channels', T, async () => {
    const [s1, s2] = await clients(2);
    await subscribe(s1, 'burst:a', 1);
    await subscribe(s2, 'burst:a', 2);
    await subscribe(s2, 'burst:b', 3);
    const pub = await RawClient.connect(srv.port);
    const N = 150;
    const channel = (i) => (i % 3 === 2 ? 'burst:b' : 'burst:a');
    const data = (i) => ({ i, pad: 'x'.repeat(i === 70 ? 20000 : (i % 7) * 40) });
    pub.write(Buffer.concat(Array.from({ length: N }, (_, i) => buildFrame({
      payload: JSON.stringify({ type: 'publish', channel: channel(i), data: data(i), id: i }),
    }))));
    const all = Array.from({ length: N }, (_, i) => ({ type: 'message', channel: channel(i), data: data(i) }));
    assert.deepEqual(await s2.nextN(N, 10000), all);
    const onA = all.filter((m) => m.channel === 'burst:a');
    assert.deepEqual(await s1.nextN(onA.length, 10000), onA);
    await Promise.all([s1.expectNothing(100), s2.expectNothing(100)]);
    await closeAll([s1, s2]);
  });

  it('channels are independent', T, async () => {
    const [x, y, both, pub] = await clients(4);
    await subscribe(x, 'room:1', 1);
    await subscribe(y, 'room:2', 2);
    await subscribe(both, 'room:1', 3);
    await subscribe(both, 'room:2', 4);
    assert.deepEqual(await pub.request({ type: 'publish', channel: 'room:1', data: 'one', id: 5 }),
      { type: 'ack', id: 5, delivered: 2 });
    assert.deepEqual(await x.next(), { type: 'message', channel: 'room:1', data: 'one' });
    assert.deepEqual(await both.next(), { type: 'message', channel: 'room:1', data: 'one' });
    await y.expectNothing();
    assert.deepEqual(await pub.request({ type: 'publish', channel: 'room:2', data: 'two', id: 6 }),
      { type: 'ack', id: 6, delivered: 2 });
    assert.deepEqual(await y.next(), { type: 'message', channel: 'room:2', data: 'two' });
    assert.deepEqual(await both.next(), { type: 'message', channel: 'room:2', data: 'two' });
    await x.expectNothing();
    assert.deepEqual(await pub.request({ type: 'publish', channel: 'room:10', data: 'ten', id: 7 }),
      { type: 'ack', id: 7, delivered: 0 }, 'room:10 is not room:1');
    assert.deepEqual(await pub.request({ type: 'publish', channel: 'ROOM:1', data: 'up', id: 8 }),
      { type: 'ack', id: 8, delivered: 0 }, 'channel names are case-sensitive');
    await Promise.all([x.expectNothing(), y.expectNothing(), both.expectNothing()]);
    await closeAll([x, y, both, pub]);
  });

  it('fans out to many subscribers with an exact count', T, async () => {
    const subs = await clients(50);
    await Promise.all(subs.map((s, i) => subscribe(s, 'wide', i)));
    const [pub] = await clients(1);
    assert.deepEqual(await pub.request({ type: 'publish', channel: 'wide', data: { k: 'v' }, id: 99 }),
      { type: 'ack', id: 99, delivered: 50 });
    for (const s of subs) assert.deepEqual(await s.next(), { type: 'message', channel: 'wide', data: { k: 'v' } });
    await closeAll([...subs, pub]);
  });
});
