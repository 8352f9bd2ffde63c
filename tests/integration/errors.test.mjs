// Protocol errors (issue #2, section 3): every error code, its exact reply
// shape {"type":"error","id"?,"code","message"}, the id echoed, and the
// connection still working after each error.

import assert from 'node:assert/strict';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import { cleanup, connect, startServer } from '../helpers/server.mjs';

const T = { timeout: 15000 };
const MAX_PUBLISH = 1024;
const MAX_SUBS = 4;

let srv;
let c; // each test's connection: its errors must never close it
let nextId = 1000;

before(async () => {
  srv = await startServer({ config: { maxPublishSize: MAX_PUBLISH, maxSubscriptions: MAX_SUBS } });
}, { timeout: 15000 });

beforeEach(async () => { c = await connect(srv.url); }, { timeout: 10000 });

afterEach(async () => {
  if (!c.closeInfo) await c.close();
}, { timeout: 10000 });

after(async () => {
  cleanup();
  await srv?.stop();
}, { timeout: 15000 });

/** Checks the generic shape of an error reply and returns it. */
function assertError(msg, code, id) {
  assert.equal(msg.type, 'error', JSON.stringify(msg));
  assert.equal(msg.code, code, JSON.stringify(msg));
  assert.equal(typeof msg.message, 'string');
  assert.ok(msg.message.length > 0, 'non-empty message');
  if (id === undefined) assert.ok(!('id' in msg), `no id expected: ${JSON.stringify(msg)}`);
  else assert.equal(msg.id, id, JSON.stringify(msg));
  assert.deepEqual(Object.keys(msg).sort(), (id === undefined ? ['code', 'message', 'type']
    : ['code', 'id', 'message', 'type']), 'no other members');
  return msg;
}

/** Proves the connection still works: a subscribe/unsubscribe round trip. */
async function stillWorks(client = c) {
  const id = nextId++;
  assert.deepEqual(await client.request({ type: 'subscribe', channel: 'alive', id }), { type: 'ack', id });
  assert.deepEqual(await client.request({ type: 'unsubscribe', channel: 'alive', id: id + 5000 }),
    { type: 'ack', id: id + 5000 });
  assert.equal(client.closeInfo, null);
}

/** Sends raw text, expects one error of `code` (with `id` if given), then checks the connection. */
async function expectError(text, code, id) {
  c.sendRaw(text);
  const msg = assertError(await c.next(), code, id);
  await stillWorks();
  return msg;
}

describe('invalid_json', () => {
  it('reports the parse position', T, async () => {
    const msg = await expectError('{"type":"subscribe",', 'invalid_json');
    assert.match(msg.message, /\d+/, `position in "${msg.message}"`);
  });

  it('gives a different position for a different error offset', T, async () => {
    const a = await expectError('{"type":x}', 'invalid_json');
    const b = await expectError('{"type":"subscribe","channel":"a",,"id":1}', 'invalid_json');
    const posA = a.message.match(/\d+/g);
    const posB = b.message.match(/\d+/g);
    assert.notDeepEqual(posA, posB, `${a.message} vs ${b.message}`);
  });

  it('rejects every kind of malformed text', T, async () => {
    for (const text of ['not json', '', '   ', '{', '}', '{"type":"publish","channel":"a","data":}',
      '{"type":"subscribe","channel":"a"} trailing', '{"type":"subscribe","channel":"a"}{}',
      "{'type':'subscribe'}", '{"type":"subscribe","channel":"a",}', '{"a":01}', '{"a":NaN}',
      '{"a":"\u0001"}', '{"a":"\\x"}', '{"a":[1,2}', '{"type":"subscribe","type":"publish","channel":"a"}']) {
      c.sendRaw(text);
      assertError(await c.next(), 'invalid_json');
    }
    await stillWorks();
  });

  it('a JSON value that is not an object is an error, not a close', T, async () => {
    for (const text of ['[1,2]', '"subscribe"', '42', 'null']) {
      c.sendRaw(text);
      const msg = await c.next();
      assert.equal(msg.type, 'error', `${text} -> ${JSON.stringify(msg)}`);
      assert.ok(['invalid_json', 'invalid_field', 'missing_field', 'unknown_type'].includes(msg.code), msg.code);
    }
    await stillWorks();
  });
});

describe('unknown_type, missing_field, invalid_field', () => {
  it('unknown_type echoes the id', T, async () => {
    await expectError('{"type":"dance","id":7}', 'unknown_type', 7);
    await expectError('{"type":"Subscribe","channel":"a","id":8}', 'unknown_type', 8);
  });

  it('missing_field for a missing type, channel or data', T, async () => {
    await expectError('{"channel":"a","id":9}', 'missing_field', 9);
    await expectError('{"type":"subscribe","id":10}', 'missing_field', 10);
    await expectError('{"type":"unsubscribe","id":11}', 'missing_field', 11);
    await expectError('{"type":"publish","channel":"a","id":12}', 'missing_field', 12);
    await expectError('{"type":"publish","data":1,"id":13}', 'missing_field', 13);
  });

  it('missing_field names the field', T, async () => {
    const msg = await expectError('{"type":"subscribe","id":14}', 'missing_field', 14);
    assert.match(msg.message, /channel/);
    const msg2 = await expectError('{"type":"publish","channel":"a","id":15}', 'missing_field', 15);
    assert.match(msg2.message, /data/);
  });

  it('invalid_field for an id that is not an integer', T, async () => {
    for (const id of ['"7"', '1.5', 'true', '[1]', '{}', '9223372036854775808']) {
      c.sendRaw(`{"type":"subscribe","channel":"a","id":${id}}`);
      const msg = await c.next();
      assert.equal(msg.type, 'error', `id ${id}`);
      assert.equal(msg.code, 'invalid_field', `id ${id}: ${JSON.stringify(msg)}`);
      assert.ok(!('id' in msg) || msg.id === undefined, `a non-integer id is not echoed (id ${id})`);
    }
    await stillWorks();
  });

  it('invalid_field for a type or channel of the wrong JSON type', T, async () => {
    await expectError('{"type":5,"channel":"a","id":16}', 'invalid_field', 16);
    c.sendRaw('{"type":"subscribe","channel":5,"id":17}');
    const msg = await c.next();
    assert.equal(msg.type, 'error');
    assert.ok(['invalid_field', 'invalid_channel'].includes(msg.code), msg.code);
    assert.equal(msg.id, 17);
    await stillWorks();
  });

  it('the id is echoed even when it comes after the bad member', T, async () => {
    await expectError('{"type":"nope","channel":"a","data":1,"id":18}', 'unknown_type', 18);
    await expectError('{"channel":"../x","type":"subscribe","id":19}', 'invalid_channel', 19);
  });

  it('large and negative integer ids are echoed exactly', T, async () => {
    c.sendRaw('{"type":"subscribe","channel":"ids","id":9007199254740991}');
    const text = (await c.nextItem()).raw;
    assert.match(text, /"id":9007199254740991\b/);
    assert.deepEqual(await c.request({ type: 'unsubscribe', channel: 'ids', id: -5 }), { type: 'ack', id: -5 });
    assert.deepEqual(await c.request({ type: 'subscribe', channel: 'ids', id: 0 }), { type: 'ack', id: 0 });
    assert.deepEqual(await c.request({ type: 'unsubscribe', channel: 'ids', id: -9007199254740991 }),
      { type: 'ack', id: -9007199254740991 });
  });
});

describe('invalid_channel', () => {
  it('refuses ../admin/secrets with "Invalid channel name format"', T, async () => {
    for (const type of ['subscribe', 'unsubscribe']) {
      c.send({ type, channel: '../admin/secrets', id: 20 });
      assert.deepEqual(await c.next(),
        { type: 'error', id: 20, code: 'invalid_channel', message: 'Invalid channel name format' });
    }
    c.send({ type: 'publish', channel: '../admin/secrets', data: 1, id: 21 });
    assert.deepEqual(await c.next(),
      { type: 'error', id: 21, code: 'invalid_channel', message: 'Invalid channel name format' });
    await stillWorks();
  });

  it('refuses other malformed names', T, async () => {
    const bad = ['', '/leading', 'a b', 'x'.repeat(256), 'a/../b', '..', 'a/..', 'a:..:b',
      'tab\there', 'é', 'semi;colon', 'new\nline', 'star*', 'q?'];
    for (const channel of bad) {
      c.send({ type: 'subscribe', channel, id: 22 });
      assert.deepEqual(await c.next(),
        { type: 'error', id: 22, code: 'invalid_channel', message: 'Invalid channel name format' },
        `channel ${JSON.stringify(channel)}`);
    }
    await stillWorks();
  });

  it('accepts admin:secrets, user:alice:notifications and the whole alphabet', T, async () => {
    const good = ['admin:secrets', 'user:alice:notifications', 'x'.repeat(255), 'A-z_0.9@x/y',
      'a.b', 'room/1', 'a..b'];
    let id = 30;
    for (const channel of good) {
      assert.deepEqual(await c.request({ type: 'subscribe', channel, id }), { type: 'ack', id },
        `channel ${channel}`);
      assert.deepEqual(await c.request({ type: 'unsubscribe', channel, id: id + 1 }), { type: 'ack', id: id + 1 });
      id += 2;
    }
  });

  it('delivers on user:alice:notifications', T, async () => {
    const [sub, pub] = await Promise.all([connect(srv.url), connect(srv.url)]);
    assert.deepEqual(await sub.request({ type: 'subscribe', channel: 'user:alice:notifications', id: 1 }),
      { type: 'ack', id: 1 });
    assert.deepEqual(await pub.request({ type: 'publish', channel: 'user:alice:notifications', data: 'hi', id: 2 }),
      { type: 'ack', id: 2, delivered: 1 });
    assert.deepEqual(await sub.next(), { type: 'message', channel: 'user:alice:notifications', data: 'hi' });
    await Promise.all([sub.close(), pub.close()]);
  });
});

describe('message_too_large (maxPublishSize 1024)', () => {
  /** A JSON string literal of exactly `n` bytes. */
  const dataOf = (n) => `"${'a'.repeat(n - 2)}"`;

  it('refuses data over maxPublishSize and echoes the id', T, async () => {
    await expectError(`{"type":"publish","channel":"big","data":${dataOf(2000)},"id":40}`,
      'message_too_large', 40);
    await expectError(`{"type":"publish","channel":"big","data":${dataOf(MAX_PUBLISH + 1)},"id":41}`,
      'message_too_large', 41);
  });

  it('accepts data of exactly maxPublishSize bytes', T, async () => {
    const [sub] = await Promise.all([connect(srv.url)]);
    assert.deepEqual(await sub.request({ type: 'subscribe', channel: 'big', id: 1 }), { type: 'ack', id: 1 });
    const data = dataOf(MAX_PUBLISH);
    c.sendRaw(`{"type":"publish","channel":"big","data":${data},"id":42}`);
    assert.deepEqual(await c.next(), { type: 'ack', id: 42, delivered: 1 });
    const item = await sub.nextItem();
    assert.equal(item.json.data, 'a'.repeat(MAX_PUBLISH - 2));
    await sub.close();
  });

  it('an oversized publish is not delivered', T, async () => {
    const sub = await connect(srv.url);
    assert.deepEqual(await sub.request({ type: 'subscribe', channel: 'big2', id: 1 }), { type: 'ack', id: 1 });
    c.sendRaw(`{"type":"publish","channel":"big2","data":${dataOf(5000)},"id":43}`);
    assertError(await c.next(), 'message_too_large', 43);
    await sub.expectNothing();
    await sub.close();
  });
});

describe('nesting_too_deep and too_many_subscriptions', () => {
  it('nesting_too_deep for data nested past the default limit (64)', T, async () => {
    const deep = `${'['.repeat(200)}${']'.repeat(200)}`;
    await expectError(`{"type":"publish","id":50,"channel":"deep","data":${deep}}`, 'nesting_too_deep', 50);
    await expectError(`{"type":"publish","id":52,"channel":"deep","data":{"a":${'{"a":'.repeat(70)}1${'}'.repeat(70)}}}`,
      'nesting_too_deep', 52);
    const ok = `${'['.repeat(10)}${']'.repeat(10)}`;
    c.sendRaw(`{"type":"publish","channel":"deep","data":${ok},"id":51}`);
    assert.deepEqual(await c.next(), { type: 'ack', id: 51, delivered: 0 });
  });

  it('nesting_too_deep echoes an id that follows the deep data', T, async () => {
    const deep = `${'['.repeat(200)}${']'.repeat(200)}`;
    await expectError(`{"type":"publish","channel":"deep","data":${deep},"id":53}`, 'nesting_too_deep', 53);
  });

  it('too_many_subscriptions past maxSubscriptions, with the id', T, async () => {
    const d = await connect(srv.url);
    for (let i = 0; i < MAX_SUBS; i++) {
      assert.deepEqual(await d.request({ type: 'subscribe', channel: `s${i}`, id: i }), { type: 'ack', id: i });
    }
    assertError(await d.request({ type: 'subscribe', channel: 'one-more', id: 60 }), 'too_many_subscriptions', 60);
    assert.deepEqual(await d.request({ type: 'unsubscribe', channel: 's0', id: 61 }), { type: 'ack', id: 61 });
    assert.deepEqual(await d.request({ type: 'subscribe', channel: 'one-more', id: 62 }), { type: 'ack', id: 62 });
    await d.close();
  });
});

describe('a bad command never closes the connection', () => {
  it('a burst of mixed errors gets one reply each, in order, then normal service', T, async () => {
    const burst = [
      ['{bad', 'invalid_json', undefined],
      ['{"type":"zzz","id":1}', 'unknown_type', 1],
      ['{"type":"publish","id":2}', 'missing_field', 2],
      ['{"type":"subscribe","channel":"../x","id":3}', 'invalid_channel', 3],
      [`{"type":"publish","channel":"b","data":"${'z'.repeat(3000)}","id":4}`, 'message_too_large', 4],
    ];
    for (const [text] of burst) c.sendRaw(text);
    for (const [, code, id] of burst) assertError(await c.next(), code, id);
    await stillWorks();
    assert.equal(c.closeInfo, null);
  });
});
