// Channel permissions (issue #3, section 2) end to end: read:<pattern> for
// subscribe, write:<pattern> for publish, '*' across ':' and '/', the {sub}
// placeholder, "*" and "*:*" for everything; refusals are forbidden errors
// naming the channel and the missing permission; a later auth replaces the
// identity; with requireAuth off everything is allowed.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { cleanup, connect } from '../helpers/server.mjs';
import { connectWithToken, sign, startServers } from '../helpers/auth.mjs';

const T = { timeout: 20000 };
const SECRET = 'permissions-test-secret-91d2';

let srv;  // requireAuth on, jwtSecret
let open; // requireAuth off

before(async () => {
  [srv, open] = await startServers([
    { config: { requireAuth: true, jwtSecret: SECRET } },
    {},
  ]);
}, { timeout: 30000 });

after(async () => {
  cleanup();
  const results = await Promise.allSettled([srv?.stop(), open?.stop()]);
  for (const r of results) if (r.status === 'rejected') throw r.reason;
}, { timeout: 30000 });

/** An HS256 token for `claims` valid for an hour. */
function token(claims) {
  return sign(claims, SECRET, 'HS256', { expiresIn: '1h' });
}

/** Connects to the auth server with `claims` in ?token=. */
function as(claims) {
  return connectWithToken(srv, 'query', token(claims));
}

/** The exact forbidden error for `op` ("subscribe" | "publish") on `channel`. */
function forbidden(id, op, channel) {
  const perm = op === 'subscribe' ? 'read' : 'write';
  return {
    type: 'error', id, code: 'forbidden',
    message: `Permission denied: ${op} to "${channel}" requires ${perm}:${channel}`,
  };
}

let nextId = 1;

/** Asserts subscribe to each channel is acked. */
async function canSubscribe(c, channels) {
  for (const channel of channels) {
    const id = nextId++;
    assert.deepEqual(await c.request({ type: 'subscribe', channel, id }), { type: 'ack', id }, `subscribe ${channel}`);
  }
}

/** Asserts subscribe to each channel is refused with the exact forbidden error. */
async function cannotSubscribe(c, channels) {
  for (const channel of channels) {
    const id = nextId++;
    assert.deepEqual(await c.request({ type: 'subscribe', channel, id }), forbidden(id, 'subscribe', channel),
      `subscribe ${channel}`);
  }
}

/** Asserts publish to each channel (nobody subscribed) is acked with delivered 0. */
async function canPublish(c, channels) {
  for (const channel of channels) {
    const id = nextId++;
    assert.deepEqual(await c.request({ type: 'publish', channel, data: 1, id }), { type: 'ack', id, delivered: 0 },
      `publish ${channel}`);
  }
}

/** Asserts publish to each channel is refused with the exact forbidden error. */
async function cannotPublish(c, channels) {
  for (const channel of channels) {
    const id = nextId++;
    assert.deepEqual(await c.request({ type: 'publish', channel, data: 1, id }), forbidden(id, 'publish', channel),
      `publish ${channel}`);
  }
}

describe('read:* and write:metrics', () => {
  it('read:* subscribes anywhere but may not publish', T, async () => {
    const c = await as({ sub: 'alice', permissions: ['read:*'] });
    await canSubscribe(c, ['metrics', 'user:bob:private', 'room/1', 'a', 'admin:secrets']);
    await cannotPublish(c, ['metrics', 'room/1']);
    await c.close();
  });

  it('write:metrics publishes to metrics only and may not subscribe', T, async () => {
    const c = await as({ sub: 'bob', permissions: ['write:metrics'] });
    await canPublish(c, ['metrics']);
    await cannotPublish(c, ['metrics2', 'xmetrics', 'metric', 'metrics:cpu', 'other']);
    await cannotSubscribe(c, ['metrics', 'other']);
    await c.close();
  });

  it('a writer reaches a reader; a refused subscribe does not subscribe', T, async () => {
    const reader = await as({ sub: 'alice', permissions: ['read:*'] });
    const writer = await as({ sub: 'bob', permissions: ['write:metrics'] });
    await canSubscribe(reader, ['metrics']);
    await cannotSubscribe(writer, ['metrics']);
    assert.deepEqual(await writer.request({ type: 'publish', channel: 'metrics', data: { cpu: 0.5 }, id: 900 }),
      { type: 'ack', id: 900, delivered: 1 });
    assert.deepEqual(await reader.next(), { type: 'message', channel: 'metrics', data: { cpu: 0.5 } });
    await writer.expectNothing(300);
    await Promise.all([reader.close(), writer.close()]);
  });

  it('a refused publish is not delivered', T, async () => {
    const reader = await as({ sub: 'alice', permissions: ['read:*'] });
    const other = await as({ sub: 'bob', permissions: ['write:metrics'] });
    await canSubscribe(reader, ['news']);
    await cannotPublish(other, ['news']);
    await reader.expectNothing(300);
    await Promise.all([reader.close(), other.close()]);
  });
});

describe('patterns', () => {
  it('read:user:*:public: * matches any run, including ":"', T, async () => {
    const c = await as({ sub: 'carol', permissions: ['read:user:*:public'] });
    await canSubscribe(c, ['user:alice:public', 'user:bob:public', 'user:a:b:public', 'user:x/y:public']);
    await cannotSubscribe(c, ['user:alice:private', 'user:public', 'user:alice:public:x', 'xuser:alice:public',
      'user:alice:publicx', 'users:alice:public']);
    await cannotPublish(c, ['user:alice:public']);
    await c.close();
  });

  it('read:user:{sub}:notifications is the client\'s own channel only', T, async () => {
    const alice = await as({ sub: 'alice', permissions: ['read:user:{sub}:notifications'] });
    await canSubscribe(alice, ['user:alice:notifications']);
    await cannotSubscribe(alice, ['user:bob:notifications', 'user:alic:notifications', 'user:alicex:notifications',
      'user::notifications']);
    const bob = await as({ sub: 'bob', permissions: ['read:user:{sub}:notifications'] });
    await canSubscribe(bob, ['user:bob:notifications']);
    await cannotSubscribe(bob, ['user:alice:notifications']);
    await Promise.all([alice.close(), bob.close()]);
  });

  it('{sub} uses the id claim when there is no sub, and matches nothing without a user id', T, async () => {
    const byId = await as({ id: 'dave', permissions: ['read:user:{sub}:notifications'] });
    await canSubscribe(byId, ['user:dave:notifications']);
    const anon = await as({ permissions: ['read:user:{sub}:notifications', 'write:{sub}'] });
    await cannotSubscribe(anon, ['user::notifications', 'user:x:notifications']);
    await cannotPublish(anon, ['x']);
    await Promise.all([byId.close(), anon.close()]);
  });

  it('"*" and "*:*" allow everything', T, async () => {
    for (const perm of ['*', '*:*']) {
      const c = await as({ sub: 'root', permissions: [perm] });
      await canSubscribe(c, [`all-${perm.length}`, 'admin:secrets', 'user:bob:notifications']);
      await canPublish(c, ['all-publish', 'admin:keys']);
      await c.close();
    }
  });

  it('write:* and read:room/*: the action must match', T, async () => {
    const c = await as({ sub: 'erin', permissions: ['write:*', 'read:room/*'] });
    await canPublish(c, ['anything', 'room/1']);
    await canSubscribe(c, ['room/1', 'room/a/b', 'room/']);
    await cannotSubscribe(c, ['room', 'rooms/1', 'other']);
    await c.close();
  });

  it('no permissions (empty array, or no claim): nothing allowed', T, async () => {
    for (const claims of [{ sub: 'nobody', permissions: [] }, { sub: 'nobody' }]) {
      const c = await as(claims);
      await cannotSubscribe(c, ['metrics']);
      await cannotPublish(c, ['metrics']);
      await c.close();
    }
  });
});

describe('identity changes', () => {
  it('a later auth replaces the permissions', T, async () => {
    const c = await as({ sub: 'frank', permissions: ['read:*'] });
    await canSubscribe(c, ['first']);
    assert.deepEqual(await c.request({ type: 'auth', token: token({ sub: 'frank', permissions: ['write:frank-out'] }), id: 50 }),
      { type: 'ack', id: 50, userId: 'frank', permissions: ['write:frank-out'] });
    await cannotSubscribe(c, ['second']);
    await canPublish(c, ['frank-out']);
    await cannotPublish(c, ['first']);
    await c.close();
  });
});

describe('requireAuth off', () => {
  it('everything is allowed without credentials', T, async () => {
    const [a, b] = await Promise.all([connect(open.url), connect(open.url)]);
    await canSubscribe(a, ['metrics', 'admin:secrets', 'user:bob:notifications']);
    assert.deepEqual(await b.request({ type: 'publish', channel: 'admin:secrets', data: 's', id: 70 }),
      { type: 'ack', id: 70, delivered: 1 });
    assert.deepEqual(await a.next(), { type: 'message', channel: 'admin:secrets', data: 's' });
    await canPublish(b, ['anything']);
    await Promise.all([a.close(), b.close()]);
  });
});
