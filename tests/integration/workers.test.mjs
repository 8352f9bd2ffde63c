// Several workers (issue 6, `--workers N`): N event loops share the listening
// port (SO_REUSEPORT spreads the connections) and every protocol feature must
// behave as with one loop. One server with --workers 2 and 40 clients, enough
// that both workers hold some (checked through /stats' workerConnections;
// with 40 connections the kernel's hash leaves one worker empty with a
// probability of 2^-39), so publishers, subscribers and presence members sit
// on both sides.
//
// Covered: every subscriber receives every message of every publisher, in
// each publisher's order, including pipelined bursts; the ack's `delivered`
// is exact; presence joins, updates and leaves reach subscribers on both
// workers and every client's presence_get agrees; a live query's pushes reach
// subscribers on both workers (writes by the sqlite3 CLI); /stats counts
// match one loop's; SIGTERM closes every client with 1001 and exits 0.
// (API-key revocation across workers is a C API call: tests/unit/test_worker.c.)

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { cleanup, connect, startServer } from '../helpers/server.mjs';

const T = { timeout: 60000 };
const CLIENTS = 40;
const POLL_MS = 50;

let srv;
let dir;
let db;
let clients = [];
let nextId = 1;

function sqlite3(file, sql) {
  return new Promise((resolve, reject) => {
    execFile('sqlite3', ['-batch', '-bail', '-cmd', '.timeout 5000', file, sql], { timeout: 15000 },
      (err, stdout, stderr) => (err ? reject(new Error(`sqlite3: ${err.message}\n${stderr}`)) : resolve(stdout)));
  });
}

async function stats() {
  const res = await fetch(`http://127.0.0.1:${srv.port}/stats`, { signal: AbortSignal.timeout(5000) });
  assert.equal(res.status, 200);
  return res.json();
}

async function ack(c, cmd) {
  const id = nextId++;
  const reply = await c.request({ ...cmd, id }, 5000);
  assert.equal(reply.type, 'ack', `${JSON.stringify(cmd)}: ${JSON.stringify(reply)}`);
  assert.equal(reply.id, id);
  return reply;
}

before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'rt-workers-'));
  db = path.join(dir, 'live.db');
  // Ten rows, so a one-row change is pushed as a query_diff (smaller than the whole result).
  const rows = Array.from({ length: 10 }, (_, i) => `(${i + 1}, 'a')`).join(', ');
  await sqlite3(db, `CREATE TABLE items(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO items VALUES ${rows};`);
  srv = await startServer({
    args: ['--workers', '2'],
    config: {
      database: { path: db, pollInterval: POLL_MS },
      queries: { items: { sql: 'SELECT id, v FROM items' } },
    },
  });
  clients = await Promise.all(Array.from({ length: CLIENTS }, () => connect(srv.url)));
}, { timeout: 30000 });

after(async () => {
  cleanup();
  try {
    await srv?.stop();
  } finally {
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
}, { timeout: 30000 });

describe('--workers 2', () => {
  it('both workers hold connections', T, async () => {
    const body = await stats();
    assert.equal(body.workers, 2);
    assert.equal(body.connections, CLIENTS);
    assert.equal(body.workerConnections.length, 2);
    assert.equal(body.workerConnections[0] + body.workerConnections[1], CLIENTS);
    assert.ok(body.workerConnections.every((n) => n > 0), `workerConnections ${body.workerConnections}`);
  });

  it('every subscriber gets every message, in each publisher\'s order; delivered is exact', T, async () => {
    const channel = 'fanout';
    await Promise.all(clients.map((c) => ack(c, { type: 'subscribe', channel })));
    // Three publishers (themselves subscribed) each send a pipelined burst of
    // 50 messages: no waiting for acks, so the loops interleave them.
    const publishers = clients.slice(0, 3);
    const PER = 50;
    const acks = publishers.map((p, k) => {
      const ids = [];
      for (let n = 0; n < PER; n++) {
        const id = nextId++;
        ids.push(id);
        p.send({ type: 'publish', channel, data: { p: k, n }, id });
      }
      return ids;
    });
    for (const [i, c] of clients.entries()) {
      const want = PER * publishers.length + (i < publishers.length ? PER : 0); // messages + own acks
      const got = await c.nextN(want, 15000);
      const seen = publishers.map(() => -1);
      for (const m of got) {
        if (m.type === 'ack') {
          assert.equal(m.delivered, CLIENTS, `ack ${JSON.stringify(m)}: every client is subscribed`);
          assert.ok(acks[i].includes(m.id), `ack id ${m.id} is one of client ${i}'s publishes`);
          continue;
        }
        assert.equal(m.type, 'message', JSON.stringify(m));
        assert.equal(m.channel, channel);
        assert.equal(m.data.n, seen[m.data.p] + 1, `client ${i}: publisher ${m.data.p}'s messages in order`);
        seen[m.data.p] = m.data.n;
      }
      assert.deepEqual(seen, publishers.map(() => PER - 1), `client ${i} got every message`);
    }
    const body = await stats();
    const ch = body.channels.find((x) => x.name === channel);
    assert.equal(ch.subscribers, CLIENTS);
    assert.equal(ch.messagesPublished, PER * publishers.length);
    assert.equal(ch.messagesDelivered, PER * publishers.length * CLIENTS);
    await Promise.all(clients.map((c) => ack(c, { type: 'unsubscribe', channel })));
  });

  it('delivered counts only the subscribers, wherever they are', T, async () => {
    const channel = 'half';
    const subs = clients.filter((_, i) => i % 2 === 1);
    await Promise.all(subs.map((c) => ack(c, { type: 'subscribe', channel })));
    for (const p of [clients[0], clients[2], clients[4]]) {
      const reply = await ack(p, { type: 'publish', channel, data: 'x' });
      assert.equal(reply.delivered, subs.length);
    }
    for (const c of subs) assert.deepEqual((await c.nextN(3)).map((m) => m.data), ['x', 'x', 'x']);
    await Promise.all(subs.map((c) => ack(c, { type: 'unsubscribe', channel })));
    assert.equal((await ack(clients[0], { type: 'publish', channel, data: 'y' })).delivered, 0);
  });

  it('presence changes reach subscribers on both workers; presence_get agrees everywhere', T, async () => {
    const channel = 'room';
    await Promise.all(clients.map((c) => ack(c, { type: 'subscribe', channel })));
    /* `from` (itself subscribed) sends cmd: every client gets a `type` push, then `from` its ack. */
    async function change(from, cmd, type, check = () => {}) {
      const id = nextId++;
      from.send({ ...cmd, channel, id });
      for (const c of clients) {
        const push = await c.next(5000);
        assert.equal(push.type, type, JSON.stringify(push));
        check(push);
      }
      assert.deepEqual(await from.next(5000), { type: 'ack', id });
    }
    const members = clients.slice(0, 6);
    for (const [k, m] of members.entries())
      await change(m, { type: 'presence', data: { k } }, 'presence_join', (p) => assert.deepEqual(p.entry.data, { k }));
    await change(members[1], { type: 'presence', data: { k: 1, away: true } }, 'presence_update');
    const lists = await Promise.all(clients.map((c) => ack(c, { type: 'presence_get', channel })));
    const first = JSON.stringify(lists[0].entries);
    assert.equal(lists[0].entries.length, members.length);
    for (const l of lists) assert.equal(JSON.stringify(l.entries), first);
    await change(members[3], { type: 'presence_leave' }, 'presence_leave');
    // A disconnect leaves too: the others see it from either worker.
    const gone = members[5];
    await gone.close();
    clients = clients.filter((c) => c !== gone);
    for (const c of clients) assert.equal((await c.next(5000)).type, 'presence_leave');
    const left = await ack(clients[clients.length - 1], { type: 'presence_get', channel });
    assert.equal(left.entries.length, members.length - 2);
    for (const m of [members[0], members[2]]) await change(m, { type: 'presence_leave' }, 'presence_leave');
    // Unsubscribing leaves the presence too (members 1 and 4: their leaves
    // reach whoever is still subscribed, so nobody else is subscribed then).
    const rest = clients.filter((c) => c !== members[1] && c !== members[4]);
    await Promise.all(rest.map((c) => ack(c, { type: 'unsubscribe', channel })));
    await ack(members[1], { type: 'unsubscribe', channel });
    assert.equal((await members[4].next(5000)).type, 'presence_leave');
    await ack(members[4], { type: 'unsubscribe', channel });
    assert.equal((await stats()).totals.presenceEntries, 0, 'unsubscribing left the presence too');
  });

  it('every subscriber sees concurrent presence changes in one same order', T, async () => {
    const channel = 'busy';
    await Promise.all(clients.map((c) => ack(c, { type: 'subscribe', channel })));
    // Four members on either worker each send 20 pipelined updates: the
    // changes interleave, but every client must see one and the same order.
    const members = clients.slice(0, 4);
    const N = 20;
    const ids = members.map(() => []);
    for (let n = 0; n < N; n++) {
      for (const [k, m] of members.entries()) {
        const id = nextId++;
        ids[k].push(id);
        m.send({ type: 'presence', channel, data: { k, n }, id });
      }
    }
    const seqs = [];
    for (const [i, c] of clients.entries()) {
      const own = i < members.length ? N : 0;
      const got = await c.nextN(N * members.length + own, 15000);
      const pushes = got.filter((m) => m.type !== 'ack');
      assert.equal(got.length - pushes.length, own, `client ${i}: its own acks`);
      seqs.push(JSON.stringify(pushes.map((p) => [p.type, p.entry.data.k, p.entry.data.n])));
    }
    for (const [i, q] of seqs.entries()) assert.equal(q, seqs[0], `client ${i} saw the changes in another order`);
    for (const m of members) {
      const id = nextId++;
      m.send({ type: 'presence_leave', channel, id });
      for (const c of clients) assert.equal((await c.next(5000)).type, 'presence_leave');
      assert.deepEqual(await m.next(5000), { type: 'ack', id });
    }
    await Promise.all(clients.map((c) => ack(c, { type: 'unsubscribe', channel })));
  });

  it('after its unsubscribe ack a client receives nothing more, wherever the publisher is', T, async () => {
    const channel = 'stream';
    const pub = clients[0];
    const subs = clients.slice(1);
    await Promise.all(subs.map((c) => ack(c, { type: 'subscribe', channel })));
    let n = 0;
    let publishing = true;
    const pump = (async () => {
      while (publishing) {
        await ack(pub, { type: 'publish', channel, data: n++ });
      }
    })();
    for (const c of subs) {
      const id = nextId++;
      c.send({ type: 'unsubscribe', channel, id });
      for (;;) {
        const m = await c.next(5000);
        if (m.type === 'ack') {
          assert.equal(m.id, id);
          break;
        }
        assert.equal(m.type, 'message');
      }
    }
    await new Promise((r) => setTimeout(r, 100));
    publishing = false;
    await pump;
    for (const c of subs) await c.expectNothing(50);
  });

  it('live query pushes reach subscribers on both workers', T, async () => {
    const subs = await Promise.all(clients.map((c) => ack(c, { type: 'query_subscribe', query: 'items' })));
    for (const s of subs) assert.equal(s.rows.length, 10);
    await sqlite3(db, "INSERT INTO items VALUES (11, 'b');");
    for (const [i, c] of clients.entries()) {
      const push = await c.next(10000);
      assert.equal(push.subscription, subs[i].subscription);
      assert.deepEqual(push.inserted, [{ id: 11, v: 'b' }], JSON.stringify(push));
    }
    await sqlite3(db, "UPDATE items SET v = 'c' WHERE id = 1;");
    for (const c of clients) assert.deepEqual((await c.next(10000)).updated, [{ id: 1, v: 'c' }]);
    const body = await stats();
    assert.equal(body.totals.liveQueries.subscriptions, clients.length);
    assert.equal(body.totals.liveQueries.instances, 1);
  });

  it('SIGTERM closes every client with 1001 and exits 0', T, async () => {
    const closes = clients.map((c) => c.closed);
    const result = await srv.stop();
    assert.equal(result.code, 0);
    const infos = await Promise.all(closes);
    for (const info of infos) assert.equal(info.code, 1001);
  });
});
