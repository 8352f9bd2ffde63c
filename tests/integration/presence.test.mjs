// Presence (issue #4, section 1) end to end against realtimed: the presence,
// presence_leave and presence_get commands, the presence_join / _update /
// _leave pushes to the channel's subscribers, and the client's copy of the
// channel's presence that those pushes keep exact (every step compares a Map
// built from the pushes with presence_get); leaving by presence_leave, by
// unsubscribing and by disconnecting; data null when absent; clients that are
// present without being subscribed; the size and per-channel limits;
// read permission and userId with requireAuth; and expiry, both through a
// client that stops answering pings and through presenceTimeout alone.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { cleanup, connect, sleep } from '../helpers/server.mjs';
import { RawClient } from '../helpers/raw.mjs';
import { assertErrorReply, connectWithToken, sign, startServers } from '../helpers/auth.mjs';

const T = { timeout: 20000 };
const SECRET = 'presence-test-secret-5c1e';
const MAX_DATA = 64;
const PING_INTERVAL = 200;
const PRESENCE_TIMEOUT = 600;
const EXP_PING_INTERVAL = 1000;
const EXP_TIMEOUT = 300;

/**
 * How far a joinedAt/updatedAt may sit outside the test's own
 * [before send, after reply] window. Same machine, same clock: the slack only
 * absorbs clock granularity and a loop-cached time, yet it still tells ms
 * since the epoch from seconds or microseconds.
 */
const CLOCK_SLACK_MS = 1000;

let srv; // defaults
let lim; // maxPresenceDataSize 64, maxPresencePerChannel 2
let sec; // requireAuth with jwtSecret
let ka;  // pingInterval 200, presenceTimeout 600
let exp; // pingInterval 1000, presenceTimeout 300: expiry while the connection stays open

before(async () => {
  [srv, lim, sec, ka, exp] = await startServers([
    {},
    { config: { maxPresenceDataSize: MAX_DATA, maxPresencePerChannel: 2 } },
    { config: { requireAuth: true, jwtSecret: SECRET } },
    { config: { pingInterval: PING_INTERVAL, presenceTimeout: PRESENCE_TIMEOUT } },
    { config: { pingInterval: EXP_PING_INTERVAL, presenceTimeout: EXP_TIMEOUT } },
  ]);
}, { timeout: 30000 });

after(async () => {
  cleanup();
  const results = await Promise.allSettled([srv, lim, sec, ka, exp].map((s) => s?.stop()));
  for (const r of results) if (r.status === 'rejected') throw r.reason;
}, { timeout: 30000 });

let nextId = 1;

/** Subscribes `c` to `channel` and asserts the exact ack. */
async function subscribe(c, channel) {
  const id = nextId++;
  assert.deepEqual(await c.request({ type: 'subscribe', channel, id }), { type: 'ack', id }, `subscribe ${channel}`);
}

/** A presence command: `data` undefined leaves the field out. */
function presenceCmd(channel, data, id = nextId++) {
  const cmd = { type: 'presence', channel, id };
  if (data !== undefined) cmd.data = data;
  return cmd;
}

/** presence_get on `channel`: asserts the exact reply shape and returns the entries. */
async function presenceGet(c, channel) {
  const id = nextId++;
  const reply = await c.request({ type: 'presence_get', channel, id });
  assert.equal(reply?.type, 'ack', `presence_get ${channel}: ${JSON.stringify(reply)}`);
  assert.deepEqual(Object.keys(reply).sort(), ['entries', 'id', 'type'], JSON.stringify(reply));
  assert.equal(reply.id, id);
  assert.ok(Array.isArray(reply.entries), JSON.stringify(reply));
  return reply.entries;
}

/** Sends `cmd` from a client that is not subscribed to the channel: the ack is all it gets. */
async function ackOnly(c, cmd) {
  assert.deepEqual(await c.request(cmd), { type: 'ack', id: cmd.id }, JSON.stringify(cmd));
}

/**
 * Checks one ENTRY: exactly the keys clientId, data, joinedAt, updatedAt
 * (plus userId when `userId` is given), the expected data, integer times
 * in ms since the epoch inside [t0, t1] (widened by CLOCK_SLACK_MS), and
 * updatedAt >= joinedAt. `clientId` (when given) must match; otherwise it
 * must be the decimal text of a numeric id.
 */
function checkEntry(e, { clientId, userId, data, t0, t1, what }) {
  const keys = ['clientId', 'data', 'joinedAt', 'updatedAt'];
  if (userId !== undefined) keys.push('userId');
  assert.deepEqual(Object.keys(e ?? {}).sort(), keys.sort(), `${what}: entry keys of ${JSON.stringify(e)}`);
  if (clientId !== undefined) assert.equal(e.clientId, clientId, `${what}: clientId`);
  assert.match(e.clientId, /^(0|[1-9][0-9]*)$/, `${what}: clientId is the decimal text of the client id`);
  if (userId !== undefined) assert.equal(e.userId, userId, `${what}: userId`);
  assert.deepEqual(e.data, data, `${what}: data`);
  for (const k of ['joinedAt', 'updatedAt']) {
    assert.ok(Number.isInteger(e[k]), `${what}: ${k} ${e[k]} is an integer`);
  }
  assert.ok(e.updatedAt >= e.joinedAt, `${what}: updatedAt ${e.updatedAt} < joinedAt ${e.joinedAt}`);
  if (t0 !== undefined) {
    assert.ok(e.updatedAt >= t0 - CLOCK_SLACK_MS && e.updatedAt <= t1 + CLOCK_SLACK_MS,
      `${what}: updatedAt ${e.updatedAt} outside [${t0}, ${t1}] (ms since the epoch)`);
  }
}

/**
 * One client's copy of a channel's presence, kept from the pushes alone:
 * a Map from clientId to entry whose insertion order is the join order
 * (an update keeps the key's place, a leave and a new join move it last).
 * apply() checks each push against the copy: a join of a client not present,
 * an update of one present with joinedAt unchanged and updatedAt not going
 * back, a leave carrying the entry exactly as the copy holds it.
 */
class PresenceCopy {
  constructor(channel, name) {
    this.channel = channel;
    this.name = name;
    this.map = new Map();
  }

  apply(push) {
    const what = `${this.name}: ${JSON.stringify(push)}`;
    assert.deepEqual(Object.keys(push ?? {}).sort(), ['channel', 'entry', 'type'], `${what}: push keys`);
    assert.equal(push.channel, this.channel, `${what}: channel`);
    const e = push.entry;
    const old = this.map.get(e?.clientId);
    switch (push.type) {
      case 'presence_join':
        assert.equal(old, undefined, `${what}: join of a client already present`);
        assert.equal(e.updatedAt, e.joinedAt, `${what}: a join has updatedAt = joinedAt`);
        this.map.set(e.clientId, e);
        break;
      case 'presence_update':
        assert.ok(old, `${what}: update of a client not present`);
        assert.equal(e.joinedAt, old.joinedAt, `${what}: an update keeps joinedAt`);
        assert.ok(e.updatedAt >= old.updatedAt, `${what}: updatedAt went back from ${old.updatedAt}`);
        this.map.set(e.clientId, e);
        break;
      case 'presence_leave':
        assert.ok(old, `${what}: leave of a client not present`);
        assert.deepEqual(e, old, `${what}: a leave carries the entry as it was`);
        this.map.delete(e.clientId);
        break;
      default:
        assert.fail(`${what}: not a presence push`);
    }
  }

  list() { return [...this.map.values()]; }
}

/**
 * Sends `cmd` from `actor` and collects the push that each of `observers`
 * (the clients subscribed to the channel, `actor` among them or not) gets
 * for it, applying each to that client's copy in `copies`. The actor, when
 * subscribed, must see its push before its ack; every observer must get the
 * same push. Returns {push, t0, t1}.
 */
async function act(actor, cmd, observers, copies) {
  const t0 = Date.now();
  actor.send(cmd);
  const pushes = [];
  for (const o of observers) {
    if (o === actor) {
      const [push, ack] = await actor.nextN(2);
      assert.ok(String(push?.type).startsWith('presence_'),
        `the actor's push comes before its ack; got ${JSON.stringify(push)} then ${JSON.stringify(ack)}`);
      assert.deepEqual(ack, { type: 'ack', id: cmd.id }, `ack of ${JSON.stringify(cmd)}`);
      pushes.push(push);
    } else {
      pushes.push(await o.next());
    }
  }
  if (!observers.includes(actor)) {
    assert.deepEqual(await actor.next(), { type: 'ack', id: cmd.id }, `ack of ${JSON.stringify(cmd)}`);
  }
  const t1 = Date.now();
  observers.forEach((o, i) => {
    assert.deepEqual(pushes[i], pushes[0], `${copies.get(o).name} sees the same push as ${copies.get(observers[0]).name}`);
    copies.get(o).apply(pushes[i]);
  });
  return { push: pushes[0], t0, t1 };
}

/**
 * Every client in `clients` asks presence_get; each answer must equal the
 * copy `copyOf(client)` (its own copy when subscribed), and that copy must
 * hold exactly `expected`: [clientId, data] pairs in join order.
 */
async function agree(clients, channel, copyOf, expected, step) {
  for (const c of clients) {
    const copy = copyOf(c);
    assert.deepEqual(copy.list().map((e) => [e.clientId, e.data]), expected, `${step}: the copy of ${copy.name}`);
    assert.deepEqual(await presenceGet(c, channel), copy.list(), `${step}: presence_get of ${copy.name} vs its copy`);
  }
}

describe('three clients join, update and leave', () => {
  it('every subscriber sees the exact sequence of pushes and presence_get agrees after each step', T, async () => {
    const CH = 'lobby';
    const [A, B, C] = await Promise.all([connect(srv.url), connect(srv.url), connect(srv.url)]);
    for (const c of [A, B, C]) await subscribe(c, CH);
    const copies = new Map([[A, new PresenceCopy(CH, 'A')], [B, new PresenceCopy(CH, 'B')],
      [C, new PresenceCopy(CH, 'C')]]);
    const own = (c) => copies.get(c);
    const dataA1 = { name: 'Alice', status: 'online' };
    const dataB = ['Bob', 2, true, null, { nested: { x: 1.5 } }];
    const dataA2 = { name: 'Alice', status: 'away', typing: false };
    const dataC = 'Carol';

    // 1. A joins.
    let r = await act(A, presenceCmd(CH, dataA1), [A, B, C], copies);
    assert.equal(r.push.type, 'presence_join');
    checkEntry(r.push.entry, { data: dataA1, t0: r.t0, t1: r.t1, what: 'A joins' });
    const idA = r.push.entry.clientId;
    const joinedA = r.push.entry.joinedAt;
    await agree([A, B, C], CH, own, [[idA, dataA1]], 'after A joins');

    // 2. B joins.
    r = await act(B, presenceCmd(CH, dataB), [A, B, C], copies);
    assert.equal(r.push.type, 'presence_join');
    checkEntry(r.push.entry, { data: dataB, t0: r.t0, t1: r.t1, what: 'B joins' });
    const idB = r.push.entry.clientId;
    assert.notEqual(idB, idA, 'distinct clients have distinct clientIds');
    await agree([A, B, C], CH, own, [[idA, dataA1], [idB, dataB]], 'after B joins');

    // 3. A updates (a few ms later, so that its updatedAt is new).
    await sleep(25);
    r = await act(A, presenceCmd(CH, dataA2), [A, B, C], copies);
    assert.equal(r.push.type, 'presence_update');
    checkEntry(r.push.entry, { clientId: idA, data: dataA2, t0: r.t0, t1: r.t1, what: 'A updates' });
    assert.equal(r.push.entry.joinedAt, joinedA, 'joinedAt unchanged by an update');
    assert.ok(r.push.entry.updatedAt > joinedA,
      `updatedAt ${r.push.entry.updatedAt} is new (joined at ${joinedA}, updated 25 ms later)`);
    await agree([A, B, C], CH, own, [[idA, dataA2], [idB, dataB]], 'after A updates (A keeps its place)');

    // 4. C joins.
    r = await act(C, presenceCmd(CH, dataC), [A, B, C], copies);
    assert.equal(r.push.type, 'presence_join');
    checkEntry(r.push.entry, { data: dataC, t0: r.t0, t1: r.t1, what: 'C joins' });
    const idC = r.push.entry.clientId;
    assert.ok(idC !== idA && idC !== idB, 'distinct clientIds');
    await agree([A, B, C], CH, own, [[idA, dataA2], [idB, dataB], [idC, dataC]], 'after C joins');

    // 5. B leaves with presence_leave (B stays subscribed).
    r = await act(B, { type: 'presence_leave', channel: CH, id: nextId++ }, [A, B, C], copies);
    assert.equal(r.push.type, 'presence_leave');
    assert.equal(r.push.entry.clientId, idB);
    await agree([A, B, C], CH, own, [[idA, dataA2], [idC, dataC]], 'after B leaves');

    // 6. C unsubscribes: it leaves the channel's presence; A and B see the leave.
    const unsub = { type: 'unsubscribe', channel: CH, id: nextId++ };
    C.send(unsub);
    const leaveC = { type: 'presence_leave', channel: CH, entry: own(C).map.get(idC) };
    for (const o of [A, B]) {
      const push = await o.next();
      assert.deepEqual(push, leaveC, `${own(o).name} sees C leave on its unsubscribe`);
      own(o).apply(push);
    }
    // C is no longer a subscriber once unsubscribed; the brief does not say
    // whether the push is sent before or after the subscription goes, so C may
    // get its own leave before the ack, or only the ack.
    const first = await C.next();
    if (first.type === 'presence_leave') {
      assert.deepEqual(first, leaveC, 'C: its own leave (if any) comes before its ack');
      assert.deepEqual(await C.next(), { type: 'ack', id: unsub.id }, 'C: unsubscribe ack');
    } else {
      assert.deepEqual(first, { type: 'ack', id: unsub.id }, 'C: unsubscribe ack');
    }
    await agree([A, B], CH, own, [[idA, dataA2]], 'after C unsubscribes');
    await agree([C], CH, () => own(A), [[idA, dataA2]], 'after C unsubscribes (C, unsubscribed, asks)');

    // 7. A disconnects: B (still subscribed) sees A leave at once; C nothing.
    await A.close();
    const push = await B.next();
    assert.deepEqual(push, { type: 'presence_leave', channel: CH, entry: own(B).map.get(idA) },
      'B sees A leave on its disconnect');
    own(B).apply(push);
    await agree([B], CH, own, [], 'after A disconnects');
    await agree([C], CH, () => own(B), [], 'after A disconnects (C asks)');
    await Promise.all([B.expectNothing(200), C.expectNothing(200)]);
    await Promise.all([B.close(), C.close()]);
  });
});

describe('presence commands', () => {
  it('presence_get lists in join order: an update keeps the place, a leave and a new join move last', T, async () => {
    const CH = 'order';
    const [x, y, z] = await Promise.all([connect(srv.url), connect(srv.url), connect(srv.url)]);
    const obs = await connect(srv.url);
    await subscribe(obs, CH);
    const copies = new Map([[obs, new PresenceCopy(CH, 'observer')]]);
    const ids = new Map();
    for (const [c, d] of [[x, 'x1'], [y, 'y1'], [z, 'z1']]) {
      const r = await act(c, presenceCmd(CH, d), [obs], copies);
      ids.set(c, r.push.entry.clientId);
    }
    const order = () => copies.get(obs).list().map((e) => e.clientId);
    assert.deepEqual(order(), [ids.get(x), ids.get(y), ids.get(z)]);
    await act(x, presenceCmd(CH, 'x2'), [obs], copies);
    await act(y, presenceCmd(CH, 'y2'), [obs], copies);
    assert.deepEqual(await presenceGet(obs, CH), copies.get(obs).list());
    assert.deepEqual(order(), [ids.get(x), ids.get(y), ids.get(z)], 'updates keep the join order');
    const before = copies.get(obs).map.get(ids.get(x));
    await act(x, { type: 'presence_leave', channel: CH, id: nextId++ }, [obs], copies);
    await sleep(20);
    const r = await act(x, presenceCmd(CH, 'x3'), [obs], copies);
    assert.equal(r.push.type, 'presence_join', 'a join after a leave is a join');
    assert.ok(r.push.entry.joinedAt > before.joinedAt, 'with a new joinedAt');
    assert.deepEqual(order(), [ids.get(y), ids.get(z), ids.get(x)]);
    assert.deepEqual(await presenceGet(x, CH), copies.get(obs).list());
    await obs.expectNothing(100);
    await Promise.all([x, y, z, obs].map((c) => c.close()));
  });

  it('presence without data (and with data null) has data null', T, async () => {
    const CH = 'nodata';
    const [p, q, obs] = await Promise.all([connect(srv.url), connect(srv.url), connect(srv.url)]);
    await subscribe(obs, CH);
    const copies = new Map([[obs, new PresenceCopy(CH, 'observer')]]);
    let r = await act(p, presenceCmd(CH, undefined), [obs], copies);
    checkEntry(r.push.entry, { data: null, t0: r.t0, t1: r.t1, what: 'join without data' });
    r = await act(q, presenceCmd(CH, null), [obs], copies);
    checkEntry(r.push.entry, { data: null, t0: r.t0, t1: r.t1, what: 'join with data null' });
    r = await act(p, presenceCmd(CH, { a: 1 }), [obs], copies);
    assert.equal(r.push.type, 'presence_update');
    r = await act(p, presenceCmd(CH, undefined), [obs], copies);
    assert.equal(r.push.type, 'presence_update', 'an update without data');
    checkEntry(r.push.entry, { data: null, what: 'update without data' });
    const entries = await presenceGet(obs, CH);
    assert.deepEqual(entries, copies.get(obs).list());
    assert.deepEqual(entries.map((e) => e.data), [null, null]);
    await Promise.all([p, q, obs].map((c) => c.close()));
  });

  it('data is kept byte for byte', T, async () => {
    const CH = 'exact';
    const [p, obs] = await Promise.all([connect(srv.url), connect(srv.url)]);
    await subscribe(obs, CH);
    const data = '{"big":18446744073709551616,"f":0.10,"e":1E+2,"s":"\\u00e9"}';
    const id = nextId++;
    p.sendRaw(`{"type":"presence","channel":"${CH}","data":${data},"id":${id}}`);
    assert.deepEqual(await p.next(), { type: 'ack', id });
    const asSent = new RegExp(`"data"\\s*:\\s*${data.replace(/[\\^$.*+?()[\]{}|]/g, '\\$&')}`);
    const push = await obs.nextItem();
    assert.match(push.raw, asSent, 'the push carries the data as sent');
    obs.send({ type: 'presence_get', channel: CH, id: nextId++ });
    const got = await obs.nextItem();
    assert.match(got.raw, asSent, 'presence_get carries the data as sent');
    await Promise.all([p.close(), obs.close()]);
  });

  it('presence_leave when not present is acknowledged, and pushes nothing', T, async () => {
    const CH = 'idem';
    const [p, obs] = await Promise.all([connect(srv.url), connect(srv.url)]);
    await subscribe(obs, CH);
    await subscribe(p, CH);
    const copies = new Map([[obs, new PresenceCopy(CH, 'observer')], [p, new PresenceCopy(CH, 'p')]]);
    for (const channel of [CH, 'never-used']) {
      const id = nextId++;
      assert.deepEqual(await p.request({ type: 'presence_leave', channel, id }), { type: 'ack', id },
        `presence_leave on ${channel} while not present`);
    }
    await act(p, presenceCmd(CH, 1), [obs, p], copies);
    await act(p, { type: 'presence_leave', channel: CH, id: nextId++ }, [obs, p], copies);
    const id = nextId++;
    assert.deepEqual(await p.request({ type: 'presence_leave', channel: CH, id }), { type: 'ack', id },
      'a second presence_leave');
    await obs.expectNothing(200);
    assert.deepEqual(await presenceGet(obs, CH), []);
    await Promise.all([p.close(), obs.close()]);
  });

  it('presence_get on a channel nobody is in: no entries', T, async () => {
    const c = await connect(srv.url);
    assert.deepEqual(await presenceGet(c, 'empty:room'), []);
    await c.close();
  });

  it('a client not subscribed can join and is listed, but receives no pushes', T, async () => {
    const CH = 'nosub';
    const [outsider, member, other] = await Promise.all([connect(srv.url), connect(srv.url), connect(srv.url)]);
    await subscribe(member, CH);
    const copies = new Map([[member, new PresenceCopy(CH, 'member')]]);
    const r = await act(outsider, presenceCmd(CH, { where: 'outside' }), [member], copies);
    assert.equal(r.push.type, 'presence_join');
    checkEntry(r.push.entry, { data: { where: 'outside' }, t0: r.t0, t1: r.t1, what: 'outsider joins' });
    // Traffic the outsider must not see: a join, a subscriber's own join, an update, a leave.
    await act(other, presenceCmd(CH, 'other'), [member], copies);
    await act(member, presenceCmd(CH, 'member'), [member], copies);
    await act(other, presenceCmd(CH, 'other2'), [member], copies);
    await act(other, { type: 'presence_leave', channel: CH, id: nextId++ }, [member], copies);
    assert.deepEqual(await presenceGet(outsider, CH), copies.get(member).list(), 'the outsider is listed');
    assert.equal(copies.get(member).list().length, 2);
    await other.close();
    await outsider.expectNothing(200);
    await outsider.close();
    const leave = await member.next();
    assert.equal(leave.type, 'presence_leave', 'the outsider leaves on disconnect');
    copies.get(member).apply(leave);
    assert.deepEqual(await presenceGet(member, CH), copies.get(member).list());
    await member.close();
  });

  it('unsubscribing leaves only that channel; disconnecting leaves every channel', T, async () => {
    const [p, obs] = await Promise.all([connect(srv.url), connect(srv.url)]);
    for (const ch of ['multi:1', 'multi:2']) {
      await subscribe(p, ch);
      await subscribe(obs, ch);
    }
    const c1 = new Map([[obs, new PresenceCopy('multi:1', 'obs@1')], [p, new PresenceCopy('multi:1', 'p@1')]]);
    const c2 = new Map([[obs, new PresenceCopy('multi:2', 'obs@2')], [p, new PresenceCopy('multi:2', 'p@2')]]);
    await act(p, presenceCmd('multi:1', 'one'), [p, obs], c1);
    await act(p, presenceCmd('multi:2', 'two'), [p, obs], c2);
    const id = nextId++;
    p.send({ type: 'unsubscribe', channel: 'multi:1', id });
    const leave = await obs.next();
    assert.equal(leave.channel, 'multi:1');
    c1.get(obs).apply(leave);
    const first = await p.next();
    if (first.type === 'presence_leave') assert.deepEqual(await p.next(), { type: 'ack', id });
    else assert.deepEqual(first, { type: 'ack', id });
    assert.deepEqual(await presenceGet(obs, 'multi:1'), []);
    assert.deepEqual(await presenceGet(obs, 'multi:2'), c2.get(obs).list());
    assert.equal(c2.get(obs).list().length, 1, 'still present in multi:2');
    p.terminate();
    const push = await obs.next(3000);
    assert.equal(push.type, 'presence_leave', 'a dropped connection leaves at once');
    c2.get(obs).apply(push);
    assert.deepEqual(await presenceGet(obs, 'multi:2'), []);
    await obs.expectNothing(200);
    await obs.close();
  });

  it('bad channels are refused like any command', T, async () => {
    const c = await connect(srv.url);
    for (const type of ['presence', 'presence_leave', 'presence_get']) {
      let id = nextId++;
      assertErrorReply(await c.request({ type, channel: '../x', id }), 'invalid_channel', id);
      id = nextId++;
      assertErrorReply(await c.request({ type, id }), 'missing_field', id);
    }
    assert.deepEqual(await presenceGet(c, 'x'), []);
    await c.close();
  });
});

describe('limits (maxPresenceDataSize 64, maxPresencePerChannel 2)', () => {
  /** Compact JSON object {"s":"xxx..."} of exactly `n` bytes. */
  const dataOfSize = (n) => ({ s: 'x'.repeat(n - 8) });

  it('data over maxPresenceDataSize is message_too_large, and changes nothing', T, async () => {
    const CH = 'lim:size';
    const [p, obs] = await Promise.all([connect(lim.url), connect(lim.url)]);
    await subscribe(obs, CH);
    const copies = new Map([[obs, new PresenceCopy(CH, 'observer')]]);
    assert.equal(JSON.stringify(dataOfSize(MAX_DATA)).length, MAX_DATA);
    let id = nextId++;
    assertErrorReply(await p.request(presenceCmd(CH, dataOfSize(MAX_DATA + 1), id)), 'message_too_large', id);
    await obs.expectNothing(100);
    assert.deepEqual(await presenceGet(obs, CH), [], 'a refused join is not listed');
    const r = await act(p, presenceCmd(CH, dataOfSize(MAX_DATA)), [obs], copies);
    assert.equal(r.push.type, 'presence_join', 'exactly maxPresenceDataSize bytes are accepted');
    id = nextId++;
    assertErrorReply(await p.request(presenceCmd(CH, dataOfSize(1000), id)), 'message_too_large', id);
    await obs.expectNothing(100);
    assert.deepEqual(await presenceGet(obs, CH), copies.get(obs).list(), 'a refused update keeps the old data');
    await act(p, presenceCmd(CH, 'small'), [obs], copies);
    await Promise.all([p.close(), obs.close()]);
  });

  it('a third join is presence_full; updates still work; a leave makes room', T, async () => {
    const CH = 'lim:full';
    const [a, b, c, obs] = await Promise.all([1, 2, 3, 4].map(() => connect(lim.url)));
    await subscribe(obs, CH);
    const copies = new Map([[obs, new PresenceCopy(CH, 'observer')]]);
    await act(a, presenceCmd(CH, 'a'), [obs], copies);
    await act(b, presenceCmd(CH, 'b'), [obs], copies);
    let id = nextId++;
    assertErrorReply(await c.request(presenceCmd(CH, 'c', id)), 'presence_full', id);
    await obs.expectNothing(100);
    const r = await act(a, presenceCmd(CH, 'a2'), [obs], copies);
    assert.equal(r.push.type, 'presence_update', 'an update in a full channel');
    await act(b, presenceCmd(CH, 'b2'), [obs], copies);
    id = nextId++;
    assertErrorReply(await c.request(presenceCmd(CH, 'c', id)), 'presence_full', id);
    assert.deepEqual(await presenceGet(obs, CH), copies.get(obs).list());
    assert.deepEqual(copies.get(obs).list().map((e) => e.data), ['a2', 'b2']);
    await ackOnly(c, presenceCmd('lim:other', 'c'));
    await act(b, { type: 'presence_leave', channel: CH, id: nextId++ }, [obs], copies);
    await act(c, presenceCmd(CH, 'c'), [obs], copies);
    assert.deepEqual(await presenceGet(obs, CH), copies.get(obs).list());
    assert.deepEqual(copies.get(obs).list().map((e) => e.data), ['a2', 'c']);
    await Promise.all([a, b, c, obs].map((x) => x.close()));
  });
});

describe('requireAuth: read permission and userId', () => {
  const token = (claims) => sign(claims, SECRET, 'HS256', { expiresIn: '1h' });
  const as = (claims) => connectWithToken(sec, 'query', token(claims));

  it('without read permission on the channel: forbidden for presence and presence_get', T, async () => {
    const CH = 'auth:lobby';
    const reader = await as({ sub: 'reader', permissions: [`read:${CH}`] });
    for (const perms of [[`write:${CH}`], ['read:other'], []]) {
      const c = await as({ sub: 'mallory', permissions: perms });
      let id = nextId++;
      assertErrorReply(await c.request(presenceCmd(CH, { x: 1 }, id)), 'forbidden', id);
      id = nextId++;
      assertErrorReply(await c.request({ type: 'presence_get', channel: CH, id }), 'forbidden', id);
      await c.close();
    }
    assert.deepEqual(await presenceGet(reader, CH), [], 'a refused join is not listed');
    await reader.close();
  });

  it('before authenticating: auth_required', T, async () => {
    const c = await connectWithToken(sec, 'none');
    for (const cmd of [presenceCmd('auth:x', 1), { type: 'presence_get', channel: 'auth:x', id: nextId++ },
      { type: 'presence_leave', channel: 'auth:x', id: nextId++ }]) {
      assertErrorReply(await c.request(cmd), 'auth_required', cmd.id);
    }
    await c.close();
  });

  it('entries carry userId for clients with a user id, and none without', T, async () => {
    const CH = 'auth:room';
    const alice = await as({ sub: 'alice', permissions: [`read:${CH}`] });
    const byId = await as({ id: 'dave', permissions: ['read:*'] });
    const anon = await as({ permissions: ['read:*'] });
    await subscribe(alice, CH);
    const copies = new Map([[alice, new PresenceCopy(CH, 'alice')]]);
    let r = await act(alice, presenceCmd(CH, { mood: 'ok' }), [alice], copies);
    checkEntry(r.push.entry, { userId: 'alice', data: { mood: 'ok' }, t0: r.t0, t1: r.t1, what: 'alice' });
    r = await act(byId, presenceCmd(CH, 2), [alice], copies);
    checkEntry(r.push.entry, { userId: 'dave', data: 2, t0: r.t0, t1: r.t1, what: 'dave (id claim)' });
    r = await act(anon, presenceCmd(CH, 3), [alice], copies);
    checkEntry(r.push.entry, { data: 3, t0: r.t0, t1: r.t1, what: 'token without a user id' });
    const entries = await presenceGet(anon, CH);
    assert.deepEqual(entries, copies.get(alice).list());
    assert.deepEqual(entries.map((e) => e.userId), ['alice', 'dave', undefined]);
    await Promise.all([alice, byId, anon].map((c) => c.close()));
  });
});

describe('timeout (pingInterval 200, presenceTimeout 600)', () => {
  it('a client that stops answering pings leaves presence; one that answers stays', { timeout: 30000 }, async () => {
    const CH = 'ka:room';
    const watcher = await connect(ka.url);
    await subscribe(watcher, CH);
    const copies = new Map([[watcher, new PresenceCopy(CH, 'watcher')]]);
    const keeper = await connect(ka.url);
    const tKeeper = Date.now();
    await act(keeper, presenceCmd(CH, 'keeper'), [watcher], copies);

    const silent = await RawClient.connect(ka.port);
    const tSilent = Date.now();
    silent.sendJSON(presenceCmd(CH, 'silent', 999));
    assert.deepEqual(await silent.nextMessage(), { type: 'ack', id: 999 });
    const join = await watcher.next();
    assert.equal(join.type, 'presence_join');
    checkEntry(join.entry, { data: 'silent', t0: tSilent, t1: Date.now(), what: 'silent joins' });
    copies.get(watcher).apply(join);

    const leave = await watcher.next(5000);
    const leftAfter = Date.now() - tSilent;
    assert.deepEqual(leave, { type: 'presence_leave', channel: CH, entry: join.entry },
      `the silent client's leave (after ${leftAfter} ms)`);
    copies.get(watcher).apply(leave);

    const waitUntil = tKeeper + 3 * PRESENCE_TIMEOUT;
    await sleep(Math.max(0, waitUntil - Date.now()));
    assert.equal(keeper.closeInfo, null, 'the answering client is still connected');
    const entries = await presenceGet(watcher, CH);
    assert.deepEqual(entries, copies.get(watcher).list(),
      `at ${Date.now() - tKeeper} ms after its join the answering client is still present, unchanged`);
    assert.deepEqual(entries.map((e) => e.data), ['keeper']);
    await watcher.expectNothing(100);
    silent.destroy();
    await Promise.all([watcher.close(), keeper.close()]);
  });
});

describe('expiry without a disconnect (pingInterval 1000, presenceTimeout 300)', () => {
  it('an entry not refreshed within presenceTimeout leaves while its connection stays open', T, async () => {
    const CH = 'exp:room';
    const [watcher, idle, busy] = await Promise.all([connect(exp.url), connect(exp.url), connect(exp.url)]);
    await subscribe(watcher, CH);
    const copies = new Map([[watcher, new PresenceCopy(CH, 'watcher')]]);
    const r = await act(idle, presenceCmd(CH, 'idle'), [watcher], copies);
    const idleId = r.push.entry.clientId;
    const b = await act(busy, presenceCmd(CH, 0), [watcher], copies);
    const busyId = b.push.entry.clientId;

    // busy refreshes by updating every 100 ms for 2 s; idle sends nothing.
    let sawIdleLeave = null;
    const deadline = Date.now() + 2000;
    for (let n = 1; Date.now() < deadline; n++) {
      await sleep(100);
      busy.send(presenceCmd(CH, n, 5000 + n));
      assert.deepEqual(await busy.next(), { type: 'ack', id: 5000 + n }, `busy update ${n}`);
      for (;;) {
        const push = await watcher.next();
        copies.get(watcher).apply(push);
        if (push.type === 'presence_leave') {
          assert.equal(push.entry.clientId, idleId, 'only the idle entry expires');
          sawIdleLeave = Date.now();
          continue;
        }
        assert.equal(push.type, 'presence_update');
        assert.equal(push.entry.clientId, busyId);
        if (push.entry.data === n) break;
      }
    }
    if (sawIdleLeave === null) {
      const push = await watcher.next(2000);
      assert.deepEqual(push, { type: 'presence_leave', channel: CH, entry: copies.get(watcher).map.get(idleId) },
        'the idle entry expires (within 4 s of its join)');
      copies.get(watcher).apply(push);
      sawIdleLeave = Date.now();
    }
    assert.ok(sawIdleLeave - r.t0 >= EXP_TIMEOUT - 10,
      `the idle entry left ${sawIdleLeave - r.t0} ms after its join, before presenceTimeout ${EXP_TIMEOUT}`);
    assert.equal(idle.closeInfo, null, 'the idle client is still connected');
    assert.deepEqual(await presenceGet(idle, CH), copies.get(watcher).list());
    assert.deepEqual(copies.get(watcher).list().map((e) => e.clientId), [busyId]);
    const again = await act(idle, presenceCmd(CH, 'back'), [watcher], copies);
    assert.equal(again.push.type, 'presence_join', 'the expired client can join again');
    await Promise.all([watcher, idle, busy].map((c) => c.close()));
  });
});
