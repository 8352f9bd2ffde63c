// GET /stats (issue #4, section 3) end to end: the exact JSON shape, exact
// counts after known activity on a fresh server (connections, subscribers,
// presence entries, messages and bytes published and delivered), a message
// rate above 0 where messages were published and 0 where none were, times in
// ms since the epoch; and, with requireAuth on, an API key (X-API-Key header
// or ?api_key=) or 401.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { cleanup, connect, sleep } from '../helpers/server.mjs';
import { startServers } from '../helpers/auth.mjs';

const T = { timeout: 20000 };
const SECRET = 'stats-test-secret-0b7a';
const API_KEY = 'stats-test-api-key-4f1c9e2d7a6b';
const CLOCK_SLACK_MS = 1000;

let open;   // requireAuth off
let locked; // requireAuth on, jwtSecret and apiKeys
let startedBefore;

before(async () => {
  startedBefore = Date.now();
  [open, locked] = await startServers([
    {},
    {
      config: {
        requireAuth: true, jwtSecret: SECRET,
        apiKeys: [{ key: API_KEY, name: 'stats-bot', permissions: ['read:*'] }],
      },
    },
  ]);
}, { timeout: 30000 });

after(async () => {
  cleanup();
  const results = await Promise.allSettled([open?.stop(), locked?.stop()]);
  for (const r of results) if (r.status === 'rejected') throw r.reason;
}, { timeout: 30000 });

const TOP_KEYS = ['channels', 'connections', 'totals', 'uptimeMs', 'workerConnections', 'workers'];
const CHANNEL_KEYS = ['bytesDelivered', 'bytesPublished', 'createdAt', 'lastActivity', 'messageRate',
  'messagesDelivered', 'messagesPublished', 'name', 'presence', 'subscribers'];
const TOTAL_KEYS = ['connectionsTotal', 'framesWritten', 'liveQueries', 'messagesDelivered',
  'messagesPublished', 'presenceEntries', 'protocolErrors', 'slowConsumersClosed', 'socketWrites'];
/* Live queries are not configured in these servers; livequery.test.mjs checks these counts. */
const NO_LIVE = { instances: 0, subscriptions: 0, evaluations: 0 };

/** GET `path` on `srv` with `headers`: resolves {status, contentType, text} (5 s at most). */
async function get(srv, path = '/stats', headers = {}) {
  const res = await fetch(`http://127.0.0.1:${srv.port}${path}`, { headers, signal: AbortSignal.timeout(5000) });
  return { status: res.status, contentType: res.headers.get('content-type') ?? '', text: await res.text() };
}

/**
 * GET /stats, asserting 200, a JSON content type and the exact shape of the
 * body: the top-level keys, each channel's keys, the totals' keys, counts as
 * non-negative integers, messageRate a finite non-negative number. Returns
 * the body with `byName` (channel name -> channel) added.
 */
async function stats(srv, path = '/stats', headers = {}) {
  const res = await get(srv, path, headers);
  assert.equal(res.status, 200, `GET ${path}: ${res.status} ${res.text}`);
  assert.match(res.contentType, /^application\/json\b/, 'Content-Type');
  const body = JSON.parse(res.text);
  /* The write path's counters move with every response (this one's included): checked apart. */
  body.writes = { socketWrites: body.totals?.socketWrites, framesWritten: body.totals?.framesWritten };
  assert.deepEqual(Object.keys(body).filter((k) => k !== 'writes').sort(), TOP_KEYS, `top-level keys of ${res.text}`);
  const count = (v, what) => assert.ok(Number.isInteger(v) && v >= 0, `${what}: ${v} is a count`);
  count(body.uptimeMs, 'uptimeMs');
  count(body.connections, 'connections');
  count(body.workers, 'workers');
  assert.ok(body.workers >= 1, `workers ${body.workers}`);
  assert.ok(Array.isArray(body.workerConnections) && body.workerConnections.length === body.workers,
    `workerConnections ${JSON.stringify(body.workerConnections)} has one count per worker`);
  body.workerConnections.forEach((n, i) => count(n, `workerConnections[${i}]`));
  assert.equal(body.workerConnections.reduce((a, n) => a + n, 0), body.connections,
    'the workers\' connections add up to connections');
  assert.ok(Array.isArray(body.channels), 'channels is an array');
  const byName = new Map();
  for (const ch of body.channels) {
    assert.deepEqual(Object.keys(ch).sort(), CHANNEL_KEYS, `channel keys of ${JSON.stringify(ch)}`);
    assert.equal(typeof ch.name, 'string');
    assert.ok(!byName.has(ch.name), `channel ${ch.name} listed once`);
    byName.set(ch.name, ch);
    for (const k of CHANNEL_KEYS) if (k !== 'name' && k !== 'messageRate') count(ch[k], `${ch.name}.${k}`);
    assert.equal(typeof ch.messageRate, 'number');
    assert.ok(Number.isFinite(ch.messageRate) && ch.messageRate >= 0, `${ch.name}.messageRate ${ch.messageRate}`);
  }
  assert.deepEqual(Object.keys(body.totals).sort(), TOTAL_KEYS, `totals keys of ${JSON.stringify(body.totals)}`);
  for (const k of TOTAL_KEYS) if (k !== 'liveQueries') count(body.totals[k], `totals.${k}`);
  assert.deepEqual(Object.keys(body.totals.liveQueries).sort(), ['evaluations', 'instances', 'subscriptions']);
  for (const [k, v] of Object.entries(body.totals.liveQueries)) count(v, `totals.liveQueries.${k}`);
  delete body.totals.socketWrites;
  delete body.totals.framesWritten;
  return { ...body, byName };
}

let nextId = 1;

async function subscribe(c, channel) {
  const id = nextId++;
  assert.deepEqual(await c.request({ type: 'subscribe', channel, id }), { type: 'ack', id }, `subscribe ${channel}`);
}

/** Publishes `data` from `c` (not subscribed) and asserts the ack's delivered count. */
async function publish(c, channel, data, delivered) {
  const id = nextId++;
  assert.deepEqual(await c.request({ type: 'publish', channel, data, id }), { type: 'ack', id, delivered },
    `publish to ${channel}`);
}

/** Enters presence from `c` (not subscribed to the channel). */
async function enter(c, channel, data) {
  const id = nextId++;
  assert.deepEqual(await c.request({ type: 'presence', channel, data, id }), { type: 'ack', id },
    `presence in ${channel}`);
}

/** Bytes of `data` as JSON.stringify sends it (UTF-8). */
const size = (data) => Buffer.byteLength(JSON.stringify(data), 'utf8');

/** Polls /stats until `cond(body)` holds (3 s at most); returns the body. */
async function statsWhen(srv, cond, what) {
  const t0 = Date.now();
  for (;;) {
    const body = await stats(srv);
    if (cond(body)) return body;
    if (Date.now() - t0 > 3000) assert.fail(`${what}: last /stats ${JSON.stringify(body)}`);
    await sleep(50);
  }
}

describe('GET /stats (requireAuth off)', () => {
  it('a fresh server: no connections, no channels, totals 0', T, async () => {
    const body = await stats(open);
    assert.equal(body.connections, 0);
    assert.deepEqual(body.channels, []);
    assert.deepEqual(body.totals, {
      connectionsTotal: 0, messagesPublished: 0, messagesDelivered: 0, slowConsumersClosed: 0,
      protocolErrors: 0, presenceEntries: 0, liveQueries: NO_LIVE,
    });
    assert.ok(body.uptimeMs <= Date.now() - startedBefore + CLOCK_SLACK_MS, `uptimeMs ${body.uptimeMs}`);
    await sleep(60);
    const later = await stats(open);
    assert.ok(later.uptimeMs >= body.uptimeMs + 50, `uptimeMs ${body.uptimeMs} then ${later.uptimeMs} 60 ms later`);
  });

  it('counts after activity are exact', T, async () => {
    const baseBody = await stats(open);
    const base = baseBody.totals;
    const baseWrites = baseBody.writes;
    const tStart = Date.now();
    const [s1, s2, s3, s4, pub, p1, p2] = await Promise.all(Array.from({ length: 7 }, () => connect(open.url)));
    // Presence first, while lobby has no subscriber: no push is sent, so the
    // message counts below hold whether or not pushes would be counted.
    await enter(p1, 'lobby', { name: 'p1' });
    await enter(p2, 'lobby', null);
    await subscribe(s1, 'news');
    await subscribe(s2, 'news');
    await subscribe(s3, 'sports');
    await subscribe(s4, 'lobby');

    const news = [{ n: 1 }, 'héllo', [1, 2, 3], { text: 'ünïcødé ✓', ok: true }];
    const sports = [42, { score: [1, 0] }];
    for (const d of news) await publish(pub, 'news', d, 2);
    const tNews = Date.now();
    for (const d of sports) await publish(pub, 'sports', d, 1);
    for (const [c, n] of [[s1, news.length], [s2, news.length], [s3, sports.length]]) {
      const got = await c.nextN(n);
      assert.ok(got.every((m) => m.type === 'message'), JSON.stringify(got));
    }
    const tEnd = Date.now();

    const body = await stats(open);
    assert.equal(body.connections, 7);
    // 10 deliveries plus acks and presence replies went out, several frames per call at most.
    const frames = body.writes.framesWritten - baseWrites.framesWritten;
    const calls = body.writes.socketWrites - baseWrites.socketWrites;
    assert.ok(frames >= 10 + 6 + 6, `framesWritten grew by ${frames}`);
    assert.ok(calls >= 1 && calls <= frames + 1, `socketWrites grew by ${calls} for ${frames} frames`);
    assert.deepEqual([...body.byName.keys()].sort(), ['lobby', 'news', 'sports']);
    const newsBytes = news.reduce((a, d) => a + size(d), 0);
    const sportsBytes = sports.reduce((a, d) => a + size(d), 0);
    const expect = {
      news: { subscribers: 2, presence: 0, messagesPublished: 4, messagesDelivered: 8,
        bytesPublished: newsBytes, bytesDelivered: 2 * newsBytes },
      sports: { subscribers: 1, presence: 0, messagesPublished: 2, messagesDelivered: 2,
        bytesPublished: sportsBytes, bytesDelivered: sportsBytes },
      lobby: { subscribers: 1, presence: 2, messagesPublished: 0, messagesDelivered: 0,
        bytesPublished: 0, bytesDelivered: 0 },
    };
    for (const [name, want] of Object.entries(expect)) {
      const ch = body.byName.get(name);
      const got = Object.fromEntries(Object.keys(want).map((k) => [k, ch[k]]));
      assert.deepEqual(got, want, `channel ${name}`);
      assert.ok(ch.createdAt >= tStart - CLOCK_SLACK_MS && ch.createdAt <= tEnd + CLOCK_SLACK_MS,
        `${name}.createdAt ${ch.createdAt} in [${tStart}, ${tEnd}] (ms since the epoch)`);
      assert.ok(ch.lastActivity >= ch.createdAt && ch.lastActivity <= Date.now() + CLOCK_SLACK_MS,
        `${name}.lastActivity ${ch.lastActivity} (createdAt ${ch.createdAt})`);
    }
    assert.ok(body.byName.get('news').lastActivity >= tNews - 50 - CLOCK_SLACK_MS, 'news.lastActivity is the last publish');
    assert.ok(body.byName.get('news').messageRate > 0, `news.messageRate ${body.byName.get('news').messageRate}`);
    assert.ok(body.byName.get('sports').messageRate > 0, `sports.messageRate ${body.byName.get('sports').messageRate}`);
    assert.equal(body.byName.get('lobby').messageRate, 0, 'no message in lobby');
    assert.deepEqual(body.totals, {
      connectionsTotal: base.connectionsTotal + 7,
      messagesPublished: base.messagesPublished + 6,
      messagesDelivered: base.messagesDelivered + 10,
      slowConsumersClosed: base.slowConsumersClosed,
      protocolErrors: base.protocolErrors,
      presenceEntries: base.presenceEntries + 2,
      liveQueries: NO_LIVE,
    });

    // A subscriber and a present client go: counts follow, totals of the past stay.
    await Promise.all([s2.close(), p1.close()]);
    const afterClose = await statsWhen(open, (b) => b.connections === 5 && b.totals.presenceEntries === base.presenceEntries + 1,
      'connections 5 and one presence entry after two closes');
    assert.equal(afterClose.byName.get('news').subscribers, 1);
    assert.equal(afterClose.byName.get('news').messagesPublished, 4);
    assert.equal(afterClose.byName.get('news').messagesDelivered, 8);
    assert.equal(afterClose.byName.get('lobby').presence, 1);
    assert.equal(afterClose.totals.connectionsTotal, base.connectionsTotal + 7);
    assert.equal(afterClose.totals.messagesPublished, base.messagesPublished + 6);
    assert.equal(afterClose.totals.messagesDelivered, base.messagesDelivered + 10);

    await Promise.all([s1, s3, s4, pub, p2].map((c) => c.close()));
    const idle = await statsWhen(open, (b) => b.connections === 0, 'connections 0 after every client closed');
    assert.equal(idle.totals.presenceEntries, base.presenceEntries);
    for (const ch of idle.channels) assert.equal(ch.subscribers, 0, `${ch.name} has no subscriber left`);
  });
});

describe('GET /stats with requireAuth on', () => {
  it('without an API key: 401', T, async () => {
    const res = await get(locked);
    assert.equal(res.status, 401, res.text);
  });

  it('with a wrong API key (header or query): 401', T, async () => {
    for (const key of ['wrong-key', `${API_KEY}x`, API_KEY.slice(0, -1)]) {
      let res = await get(locked, '/stats', { 'X-API-Key': key });
      assert.equal(res.status, 401, `X-API-Key ${key}: ${res.text}`);
      assert.ok(!res.text.includes(key), 'the body does not echo the key');
      res = await get(locked, `/stats?api_key=${encodeURIComponent(key)}`);
      assert.equal(res.status, 401, `?api_key=${key}: ${res.text}`);
    }
  });

  it('with X-API-Key: 200 and the stats', T, async () => {
    const body = await stats(locked, '/stats', { 'X-API-Key': API_KEY });
    assert.equal(body.connections, 0);
    assert.deepEqual(body.channels, []);
  });

  it('with ?api_key=: 200 and the stats', T, async () => {
    const c = await connect(locked.url, { headers: { 'X-API-Key': API_KEY } });
    await subscribe(c, 'metrics');
    const body = await stats(locked, `/stats?api_key=${encodeURIComponent(API_KEY)}`);
    assert.equal(body.connections, 1);
    assert.deepEqual(body.channels.map((ch) => [ch.name, ch.subscribers]), [['metrics', 1]]);
    await c.close();
  });
});
