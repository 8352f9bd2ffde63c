// Live queries on an embedded SQLite file (issue 5) end to end. Every test
// gets its own database file in a fresh temporary directory, created with the
// schema below by the `sqlite3` command-line tool, and its own server whose
// config points database.path at that file. All writes come from ANOTHER
// process (the sqlite3 CLI, run with execFile), so the server has to notice
// commits it did not make.
//
// Covered: the ack (columns and current rows), query_diff pushes in order for
// inserts, updates and deletes, with the client's reconstructed result equal
// to a fresh SELECT run by the CLI; joins and views; no push for a write to an
// unrelated table, to a row the query does not select, or that changes no
// value; query_result pushes for an unkeyed query; a burst of commits costs
// one evaluation per poll interval, not one per commit; 100 clients on the
// same (query, params) share one instance and one evaluation per commit;
// different params are separate instances; query_unsubscribe; every error
// code (unknown_query, query_not_allowed, query_error, query_timeout,
// query_too_large, forbidden); row encoding (64-bit integers, REAL, TEXT,
// NULL, BLOB as base64); a disconnect drops the client's subscriptions;
// database.setup on a new file.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { cleanup, connect, sleep, startServer } from '../helpers/server.mjs';
import { assertErrorReply, connectWithToken, sign } from '../helpers/auth.mjs';

const T = { timeout: 30000 };
const POLL_MS = 50;         // database.pollInterval of every server here
const PUSH_TIMEOUT = 5000;  // a push is due within ~pollInterval + one evaluation; generous for ASan builds
const REPLY_TIMEOUT = 5000; // an ack or error to a query_subscribe (one evaluation)
const QUIET_MS = 10 * POLL_MS; // "nothing arrives": ten poll intervals, well past 3x pollInterval
const SECRET = 'livequery-test-secret-5e1a';

const SCHEMA = `
CREATE TABLE orders(id INTEGER PRIMARY KEY, status TEXT NOT NULL, total REAL, customer_id INTEGER);
CREATE TABLE customers(id INTEGER PRIMARY KEY, name TEXT);
CREATE TABLE audit(id INTEGER PRIMARY KEY, note TEXT);
CREATE VIEW big_orders AS SELECT id, total FROM orders WHERE total > 50;
CREATE TABLE kinds(id INTEGER PRIMARY KEY, i INTEGER, r REAL, t TEXT, b BLOB, n);
`;

/** Orders 1..10 pending (total id*10+0.5), 11..13 shipped (id*10+0.75); customers 1..3. */
function seedSql() {
  const rows = [];
  for (let id = 1; id <= 10; id++) rows.push(`(${id}, 'pending', ${id * 10 + 0.5}, ${1 + (id % 3)})`);
  for (let id = 11; id <= 13; id++) rows.push(`(${id}, 'shipped', ${id * 10 + 0.75}, ${1 + (id % 3)})`);
  return `INSERT INTO orders(id, status, total, customer_id) VALUES ${rows.join(', ')};
INSERT INTO customers(id, name) VALUES (1, 'Ada'), (2, 'Brian'), (3, 'Cleo');
INSERT INTO audit(id, note) VALUES (1, 'created');`;
}

const PENDING_SQL = 'SELECT id, status, total FROM orders WHERE status = $1';

const QUERIES = {
  pending_orders: { sql: PENDING_SQL, permission: 'read:orders' },
  pending_q: { sql: 'SELECT id, status, total FROM orders WHERE status = ?' },
  status_counts: { sql: 'SELECT status, count(*) AS n FROM orders GROUP BY status ORDER BY status' },
  order_customers: {
    sql: 'SELECT o.id AS id, o.total AS total, c.name AS customer FROM orders o '
      + 'JOIN customers c ON c.id = o.customer_id WHERE o.status = $1',
    key: 'id',
  },
  big_orders: { sql: 'SELECT id, total FROM big_orders', key: 'id' },
  all_orders: { sql: 'SELECT id, status, total FROM orders' },
  kinds: { sql: 'SELECT id, i, r, t, b, n FROM kinds' },
};

// ------------------------------------------------------------------ sqlite3 CLI

/**
 * Runs `sql` on the file `db` with the sqlite3 CLI in another process (15 s
 * at most; busy timeout 5 s, so a read of the server's never fails a write).
 * `json` selects -json output. Resolves stdout; rejects with the CLI's stderr.
 */
function sqlite3(db, sql, { json = false } = {}) {
  const args = ['-batch', '-bail', '-cmd', '.timeout 5000'];
  if (json) args.push('-json');
  args.push(db, sql);
  return new Promise((resolve, reject) => {
    execFile('sqlite3', args, { timeout: 15000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`sqlite3 ${db} ${JSON.stringify(sql)} failed: ${err.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

/** A fresh SELECT through the CLI: the rows as objects (empty array for no rows). */
async function select(db, sql) {
  const out = await sqlite3(db, sql, { json: true });
  return out.trim() === '' ? [] : JSON.parse(out);
}

/** Rows sorted by `key` (for comparing results whose order is not specified). */
function sortBy(rows, key = 'id') {
  return [...rows].sort((a, b) => (a[key] < b[key] ? -1 : a[key] > b[key] ? 1 : 0));
}

// ------------------------------------------------------------------ servers

/**
 * Creates a database file in a new temporary directory with SCHEMA and
 * `seed`, then starts a server on it: database {path, pollInterval: POLL_MS,
 * ...database}, `queries`, `liveQueries` when given, and `config` merged on
 * top. Returns {srv, db, dir, stop}.
 */
async function startLive({ seed = seedSql(), queries = QUERIES, liveQueries, database = {}, config = {},
  createDb = true } = {}) {
  const dir = mkdtempSync(path.join(tmpdir(), 'rt-live-'));
  const db = path.join(dir, 'live.db');
  let srv;
  try {
    if (createDb) await sqlite3(db, SCHEMA + seed);
    const cfg = { database: { path: db, pollInterval: POLL_MS, ...database }, queries, ...config };
    if (liveQueries !== undefined) cfg.liveQueries = liveQueries;
    srv = await startServer({ config: cfg });
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  async function stop() {
    try {
      await srv.stop();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  return { srv, db, dir, stop };
}

/**
 * Runs `fn(env)` against a fresh server and database (see startLive), then
 * destroys every client and stops the server (which itself checks exit 0 and
 * no sanitizer report), also when `fn` failed; `fn`'s error wins.
 */
async function withLive(opts, fn) {
  const env = await startLive(opts);
  let failure = null;
  try {
    await fn(env);
  } catch (err) {
    failure = err;
  }
  cleanup();
  try {
    await env.stop();
  } catch (err) {
    if (failure) failure.message += `\n(stopping the server also failed: ${err.message})`;
    else failure = err;
  }
  if (failure) throw failure;
}

/** GET /stats: the totals' liveQueries object, its shape asserted {instances, subscriptions, evaluations}. */
async function liveStats(srv, headers = {}) {
  const res = await fetch(`http://127.0.0.1:${srv.port}/stats`, { headers, signal: AbortSignal.timeout(5000) });
  const text = await res.text();
  assert.equal(res.status, 200, `GET /stats: ${res.status} ${text}`);
  const body = JSON.parse(text);
  const lq = body?.totals?.liveQueries;
  assert.ok(lq && typeof lq === 'object', `totals.liveQueries in ${text}`);
  assert.deepEqual(Object.keys(lq).sort(), ['evaluations', 'instances', 'subscriptions'],
    `keys of totals.liveQueries ${JSON.stringify(lq)}`);
  for (const k of Object.keys(lq)) assert.ok(Number.isInteger(lq[k]) && lq[k] >= 0, `liveQueries.${k}: ${lq[k]}`);
  return lq;
}

/** Polls /stats until cond(liveQueries) holds (5 s at most); returns it. */
async function liveStatsWhen(srv, cond, what) {
  const t0 = Date.now();
  for (;;) {
    const lq = await liveStats(srv);
    if (cond(lq)) return lq;
    if (Date.now() - t0 > 5000) assert.fail(`${what}: last totals.liveQueries ${JSON.stringify(lq)}`);
    await sleep(POLL_MS);
  }
}

/**
 * The evaluation count once it has stopped moving: two reads 4 poll
 * intervals apart that agree (5 s at most), so a later delta counts only
 * what the test caused.
 */
async function settledEvaluations(srv) {
  const t0 = Date.now();
  let prev = (await liveStats(srv)).evaluations;
  for (;;) {
    await sleep(4 * POLL_MS);
    const cur = (await liveStats(srv)).evaluations;
    if (cur === prev) return cur;
    if (Date.now() - t0 > 5000) assert.fail(`evaluations still moving after 5 s (${prev} -> ${cur})`);
    prev = cur;
  }
}

// ------------------------------------------------------------------ protocol

let nextId = 1;

/** Asserts `row` is an object whose keys are exactly `columns`, in column order. */
function assertRow(row, columns, what) {
  assert.ok(row && typeof row === 'object' && !Array.isArray(row), `${what}: row ${JSON.stringify(row)} is an object`);
  assert.deepEqual(Object.keys(row), columns, `${what}: keys of row ${JSON.stringify(row)} in column order`);
}

/**
 * Asserts the exact shape of a query_subscribe ack:
 * {type:"ack", id, subscription:<non-empty string>, columns:[strings], key?:<a column>, rows:[rows]}
 * ("key" names the key column of a keyed result, so a client knows what `deleted` lists).
 */
function assertAck(msg, id) {
  const text = JSON.stringify(msg);
  assert.equal(msg?.type, 'ack', `expected an ack, got ${text}`);
  const keys = ['columns', 'id', ...('key' in msg ? ['key'] : []), 'rows', 'subscription', 'type'];
  assert.deepEqual(Object.keys(msg).sort(), keys, `ack keys: ${text}`);
  if ('key' in msg) assert.ok(msg.columns.includes(msg.key), `ack key ${msg.key} is a column: ${text}`);
  assert.equal(msg.id, id, `ack id: ${text}`);
  assert.equal(typeof msg.subscription, 'string', `subscription id is a string: ${text}`);
  assert.ok(msg.subscription.length > 0, 'non-empty subscription id');
  assert.ok(Array.isArray(msg.columns) && msg.columns.every((c) => typeof c === 'string'), `columns: ${text}`);
  assert.ok(Array.isArray(msg.rows), `rows: ${text}`);
  for (const r of msg.rows) assertRow(r, msg.columns, 'ack');
}

/** Builds a query_subscribe command: {query} or {sql}, params when given. */
function subscribeCmd({ query, sql, params }, id) {
  const cmd = { type: 'query_subscribe' };
  if (query !== undefined) cmd.query = query;
  if (sql !== undefined) cmd.sql = sql;
  if (params !== undefined) cmd.params = params;
  cmd.id = id;
  return cmd;
}

/** Subscribes and asserts the ack; returns {sub, columns, rows}. */
async function subscribe(c, spec) {
  const id = nextId++;
  const msg = await c.request(subscribeCmd(spec, id), REPLY_TIMEOUT);
  assertAck(msg, id);
  return { sub: msg.subscription, columns: msg.columns, rows: msg.rows, key: msg.key };
}

/** Sends a query_subscribe that must fail with `code`; returns the error message. */
async function subscribeFails(c, spec, code) {
  const id = nextId++;
  const msg = await c.request(subscribeCmd(spec, id), REPLY_TIMEOUT);
  return assertErrorReply(msg, code, id);
}

/** Unsubscribes and asserts the exact ack {type:"ack", id}. */
async function unsubscribe(c, subscription) {
  const id = nextId++;
  assert.deepEqual(await c.request({ type: 'query_unsubscribe', subscription, id }, REPLY_TIMEOUT),
    { type: 'ack', id }, `query_unsubscribe ${subscription}`);
}

/** The next message, which must be a push for `sub`; `what` labels a timeout. */
async function nextPush(c, sub, what) {
  let msg;
  try {
    msg = await c.next(PUSH_TIMEOUT);
  } catch (err) {
    throw new Error(`${what}: no push (${err.message})`);
  }
  assert.equal(msg.subscription, sub, `${what}: push for subscription ${sub}: ${JSON.stringify(msg)}`);
  return msg;
}

/** Asserts the exact shape of a query_diff: all three arrays present, rows in column order. */
function assertDiffShape(msg, sub, columns, what) {
  const text = JSON.stringify(msg);
  assert.equal(msg.type, 'query_diff', `${what}: expected a query_diff, got ${text}`);
  assert.deepEqual(Object.keys(msg).sort(), ['deleted', 'inserted', 'subscription', 'type', 'updated'],
    `${what}: query_diff keys: ${text}`);
  assert.equal(msg.subscription, sub);
  for (const k of ['inserted', 'updated', 'deleted']) assert.ok(Array.isArray(msg[k]), `${what}: ${k} is an array: ${text}`);
  for (const r of [...msg.inserted, ...msg.updated]) assertRow(r, columns, what);
}

/** Asserts the exact shape of a query_result: {type, subscription, rows}. */
function assertResultShape(msg, sub, columns, what) {
  const text = JSON.stringify(msg);
  assert.equal(msg.type, 'query_result', `${what}: expected a query_result, got ${text}`);
  assert.deepEqual(Object.keys(msg).sort(), ['rows', 'subscription', 'type'], `${what}: query_result keys: ${text}`);
  assert.equal(msg.subscription, sub);
  assert.ok(Array.isArray(msg.rows), `${what}: rows is an array`);
  for (const r of msg.rows) assertRow(r, columns, what);
}

/**
 * A client's copy of a keyed result, rebuilt from pushes: a query_diff
 * inserts rows whose key is new, replaces rows whose key is known and removes
 * deleted keys (each checked: a diff that inserts a known key, or updates or
 * deletes an unknown one, fails); a query_result replaces everything.
 */
class Mirror {
  constructor(rows, columns, key = 'id') {
    this.key = key;
    this.columns = columns;
    this.map = new Map(rows.map((r) => [r[key], r]));
    assert.equal(this.map.size, rows.length, `keys of the initial rows are unique: ${JSON.stringify(rows)}`);
  }

  apply(msg, sub, what) {
    if (msg.type === 'query_result') {
      assertResultShape(msg, sub, this.columns, what);
      this.map = new Map(msg.rows.map((r) => [r[this.key], r]));
      return;
    }
    assertDiffShape(msg, sub, this.columns, what);
    for (const k of msg.deleted) {
      assert.ok(this.map.has(k), `${what}: deleted key ${JSON.stringify(k)} is in the result`);
      this.map.delete(k);
    }
    for (const r of msg.updated) {
      assert.ok(this.map.has(r[this.key]), `${what}: updated row ${JSON.stringify(r)} is in the result`);
      this.map.set(r[this.key], r);
    }
    for (const r of msg.inserted) {
      assert.ok(!this.map.has(r[this.key]), `${what}: inserted row ${JSON.stringify(r)} is new`);
      this.map.set(r[this.key], r);
    }
  }

  sorted() {
    return sortBy([...this.map.values()], this.key);
  }
}

/** Asserts that none of `clients` receives anything for QUIET_MS. */
async function expectQuiet(clients, what) {
  await sleep(QUIET_MS);
  for (const c of clients) {
    if (c.queue.length > 0) {
      assert.fail(`${what}: expected no push within ${QUIET_MS} ms, got: ${c.queue.map((i) => i.raw).join(' | ')}`);
    }
  }
}

/** The diff of one commit, with each array sorted (order inside one diff is not specified). */
function normalizeDiff(msg) {
  return {
    ...msg,
    inserted: sortBy(msg.inserted),
    updated: sortBy(msg.updated),
    deleted: [...msg.deleted].sort((a, b) => a - b),
  };
}

const PENDING_FRESH = "SELECT id, status, total FROM orders WHERE status = 'pending'";

// ------------------------------------------------------------------ tests

describe('keyed live query: diffs from another process', () => {
  it('ack has the columns and current rows; inserts, updates and deletes arrive as query_diff in order', T, async () => {
    await withLive({}, async ({ srv, db }) => {
      const c = await connect(srv.url);
      const { sub, columns, rows, key } = await subscribe(c, { query: 'pending_orders', params: ['pending'] });
      assert.equal(key, 'id', 'the ack names the key column');
      assert.deepEqual(columns, ['id', 'status', 'total']);
      assert.deepEqual(sortBy(rows), sortBy(await select(db, PENDING_FRESH)), 'ack rows = fresh SELECT');
      assert.equal(rows.length, 10);
      assert.deepEqual(sortBy(rows)[0], { id: 1, status: 'pending', total: 10.5 });
      const mirror = new Mirror(rows, columns);

      const steps = [
        ['insert', "INSERT INTO orders(id, status, total, customer_id) VALUES (20, 'pending', 200.25, 1)",
          { inserted: [{ id: 20, status: 'pending', total: 200.25 }], updated: [], deleted: [] }],
        ['update', 'UPDATE orders SET total = 201.5 WHERE id = 20',
          { inserted: [], updated: [{ id: 20, status: 'pending', total: 201.5 }], deleted: [] }],
        ['delete', 'DELETE FROM orders WHERE id = 1',
          { inserted: [], updated: [], deleted: [1] }],
        ['row leaves the result', "UPDATE orders SET status = 'shipped' WHERE id = 2",
          { inserted: [], updated: [], deleted: [2] }],
        ['row enters the result', "UPDATE orders SET status = 'pending' WHERE id = 11",
          { inserted: [{ id: 11, status: 'pending', total: 110.75 }], updated: [], deleted: [] }],
        ['one transaction: insert + update + delete',
          "BEGIN; INSERT INTO orders(id, status, total) VALUES (21, 'pending', 5.0); "
            + 'UPDATE orders SET total = 0.125 WHERE id = 3; DELETE FROM orders WHERE id = 4; COMMIT;',
          { inserted: [{ id: 21, status: 'pending', total: 5 }], updated: [{ id: 3, status: 'pending', total: 0.125 }], deleted: [4] }],
        ['multi-row insert', "INSERT INTO orders(id, status, total) VALUES (22, 'pending', 1.5), (23, 'pending', 2.5)",
          { inserted: [{ id: 22, status: 'pending', total: 1.5 }, { id: 23, status: 'pending', total: 2.5 }], updated: [], deleted: [] }],
        ['update several rows', "UPDATE orders SET total = total + 1 WHERE id IN (5, 6)",
          { inserted: [], updated: [{ id: 5, status: 'pending', total: 51.5 }, { id: 6, status: 'pending', total: 61.5 }], deleted: [] }],
      ];
      for (const [what, sql, expected] of steps) {
        await sqlite3(db, sql);
        const msg = await nextPush(c, sub, what);
        assertDiffShape(msg, sub, columns, what);
        assert.deepEqual(normalizeDiff(msg), { type: 'query_diff', subscription: sub, ...expected }, what);
        mirror.apply(msg, sub, what);
        assert.deepEqual(mirror.sorted(), sortBy(await select(db, PENDING_FRESH)), `${what}: reconstructed = fresh SELECT`);
      }
      await expectQuiet([c], 'after the last step');
    });
  });

  it('a `?` placeholder query gets the same result and diffs', T, async () => {
    await withLive({}, async ({ srv, db }) => {
      const c = await connect(srv.url);
      const { sub, columns, rows } = await subscribe(c, { query: 'pending_q', params: ['pending'] });
      assert.deepEqual(sortBy(rows), sortBy(await select(db, PENDING_FRESH)));
      await sqlite3(db, 'DELETE FROM orders WHERE id = 7');
      const msg = await nextPush(c, sub, 'delete');
      assertDiffShape(msg, sub, columns, 'delete');
      assert.deepEqual(msg, { type: 'query_diff', subscription: sub, inserted: [], updated: [], deleted: [7] });
    });
  });

  it('a burst of commits: fewer evaluations than commits, result converges to a fresh SELECT', T, async () => {
    await withLive({}, async ({ srv, db }) => {
      const c = await connect(srv.url);
      const { sub, columns, rows } = await subscribe(c, { query: 'pending_orders', params: ['pending'] });
      const mirror = new Mirror(rows, columns);
      const e0 = await settledEvaluations(srv);
      const commits = [];
      for (let i = 0; i < 400; i++) {
        const id = 100 + i;
        commits.push(`INSERT INTO orders(id, status, total) VALUES (${id}, 'pending', ${i}.5);`);
        if (i % 4 === 3) commits.push(`UPDATE orders SET total = total * 2 WHERE id = ${id - 2};`);
        if (i % 5 === 4) commits.push(`DELETE FROM orders WHERE id = ${id - 4};`);
      }
      // One CLI process, each statement its own autocommit transaction.
      const t0 = Date.now();
      await sqlite3(db, commits.join('\n'));
      const burstMs = Date.now() - t0;
      const expected = sortBy(await select(db, PENDING_FRESH));
      let pushes = 0;
      const deadline = Date.now() + PUSH_TIMEOUT;
      while (JSON.stringify(mirror.sorted()) !== JSON.stringify(expected)) {
        assert.ok(Date.now() < deadline, `result did not converge: have ${JSON.stringify(mirror.sorted())}`);
        mirror.apply(await nextPush(c, sub, `burst push ${pushes + 1}`), sub, `burst push ${pushes + 1}`);
        pushes++;
      }
      const convergedMs = Date.now() - t0;
      await expectQuiet([c], 'after converging');
      const evals = (await liveStats(srv)).evaluations - e0;
      const bound = Math.ceil(burstMs / POLL_MS) + 2;
      assert.ok(pushes <= evals, `${pushes} pushes need at least as many evaluations (${evals})`);
      assert.ok(evals <= bound && evals < commits.length,
        `${commits.length} commits in ${burstMs} ms cost ${evals} evaluations and ${pushes} pushes, converged `
        + `${convergedMs} ms after the burst began (at most ${bound} evaluations: one per poll interval)`);
    });
  });

  it('joins and views: a change to any table read re-runs the query (configured key)', T, async () => {
    await withLive({}, async ({ srv, db }) => {
      const c = await connect(srv.url);
      const join = await subscribe(c, { query: 'order_customers', params: ['pending'] });
      assert.deepEqual(join.columns, ['id', 'total', 'customer']);
      const joinFresh = "SELECT o.id AS id, o.total AS total, c.name AS customer FROM orders o "
        + "JOIN customers c ON c.id = o.customer_id WHERE o.status = 'pending'";
      assert.deepEqual(sortBy(join.rows), sortBy(await select(db, joinFresh)));
      const jm = new Mirror(join.rows, join.columns);

      // customers is read only through the join.
      await sqlite3(db, "UPDATE customers SET name = 'Zed' WHERE id = 1");
      const d1 = await nextPush(c, join.sub, 'customer rename');
      assertDiffShape(d1, join.sub, join.columns, 'customer rename');
      const renamed = (await select(db, `${joinFresh} AND c.id = 1`));
      assert.deepEqual(normalizeDiff(d1), { type: 'query_diff', subscription: join.sub, inserted: [], updated: sortBy(renamed), deleted: [] });
      jm.apply(d1, join.sub, 'customer rename');
      assert.deepEqual(jm.sorted(), sortBy(await select(db, joinFresh)));
      await c.close();

      const v = await connect(srv.url);
      const view = await subscribe(v, { query: 'big_orders' });
      assert.deepEqual(view.columns, ['id', 'total']);
      // Orders 5..13: a result larger than a one-row diff, so the push is a query_diff.
      assert.deepEqual(sortBy(view.rows), sortBy(await select(db, 'SELECT id, total FROM orders WHERE total > 50')));
      assert.equal(view.rows.length, 9);
      // orders is read only through the view.
      await sqlite3(db, "INSERT INTO orders(id, status, total) VALUES (40, 'shipped', 999.5)");
      const d2 = await nextPush(v, view.sub, 'insert under the view');
      assertDiffShape(d2, view.sub, view.columns, 'insert under the view');
      assert.deepEqual(d2, { type: 'query_diff', subscription: view.sub, inserted: [{ id: 40, total: 999.5 }], updated: [], deleted: [] });
    });
  });
});

describe('no push when the result did not change', () => {
  it('unrelated table, unselected row, unselected insert, write of equal values: nothing; then a real change: one diff', T, async () => {
    await withLive({}, async ({ srv, db }) => {
      const c = await connect(srv.url);
      const { sub, columns } = await subscribe(c, { query: 'pending_orders', params: ['pending'] });
      await sqlite3(db, "INSERT INTO audit(note) VALUES ('unrelated')");
      await expectQuiet([c], 'write to an unrelated table');
      await sqlite3(db, "UPDATE orders SET total = 1 WHERE status = 'shipped'");
      await expectQuiet([c], "update of rows with status != 'pending'");
      await sqlite3(db, "INSERT INTO orders(id, status, total) VALUES (50, 'shipped', 3)");
      await expectQuiet([c], 'insert of a row the query does not select');
      await sqlite3(db, 'UPDATE orders SET total = total WHERE id = 5');
      await expectQuiet([c], 'update that changes no value');
      await sqlite3(db, "INSERT INTO orders(id, status, total) VALUES (51, 'pending', 7.5)");
      const msg = await nextPush(c, sub, 'real change');
      assertDiffShape(msg, sub, columns, 'real change');
      assert.deepEqual(msg, { type: 'query_diff', subscription: sub, inserted: [{ id: 51, status: 'pending', total: 7.5 }], updated: [], deleted: [] });
      await expectQuiet([c], 'after the real change');
    });
  });

  it('a write to an unrelated table costs no evaluation; a write to a read table costs exactly one', T, async () => {
    await withLive({}, async ({ srv, db }) => {
      const c = await connect(srv.url);
      await subscribe(c, { query: 'pending_orders', params: ['pending'] });
      const e0 = await settledEvaluations(srv);
      await sqlite3(db, "INSERT INTO audit(note) VALUES ('unrelated')");
      await expectQuiet([c], 'write to audit');
      assert.equal((await liveStats(srv)).evaluations, e0, 'evaluations after a write to a table no query reads');
      await sqlite3(db, "UPDATE orders SET total = 2 WHERE id = 12");
      await expectQuiet([c], 'write to an unselected orders row');
      assert.equal((await liveStats(srv)).evaluations, e0 + 1, 'evaluations after one commit to orders');
    });
  });
});

describe('unkeyed query: query_result pushes', () => {
  it('GROUP BY query: ack rows, then the full result after each change; no push when counts are unchanged', T, async () => {
    await withLive({}, async ({ srv, db }) => {
      const c = await connect(srv.url);
      const fresh = 'SELECT status, count(*) AS n FROM orders GROUP BY status ORDER BY status';
      const { sub, columns, rows } = await subscribe(c, { query: 'status_counts' });
      assert.deepEqual(columns, ['status', 'n']);
      assert.deepEqual(rows, [{ status: 'pending', n: 10 }, { status: 'shipped', n: 3 }]);
      assert.deepEqual(rows, await select(db, fresh));

      await sqlite3(db, "INSERT INTO orders(id, status, total) VALUES (60, 'cancelled', 1)");
      let msg = await nextPush(c, sub, 'insert');
      assertResultShape(msg, sub, columns, 'insert');
      assert.deepEqual(msg.rows, [{ status: 'cancelled', n: 1 }, { status: 'pending', n: 10 }, { status: 'shipped', n: 3 }]);
      assert.deepEqual(msg.rows, await select(db, fresh));

      await sqlite3(db, "DELETE FROM orders WHERE status = 'shipped'");
      msg = await nextPush(c, sub, 'delete');
      assertResultShape(msg, sub, columns, 'delete');
      assert.deepEqual(msg.rows, await select(db, fresh));
      assert.deepEqual(msg.rows, [{ status: 'cancelled', n: 1 }, { status: 'pending', n: 10 }]);

      await sqlite3(db, 'UPDATE orders SET total = total + 1');
      await expectQuiet([c], 'update that keeps the counts');
    });
  });
});

describe('sharing: one instance per (query, params)', () => {
  it('100 clients on the same query: one instance, one evaluation and one diff each per commit; other params: another instance', T, async () => {
    await withLive({}, async ({ srv, db }) => {
      const clients = await Promise.all(Array.from({ length: 100 }, () => connect(srv.url)));
      const subs = await Promise.all(clients.map((c) => subscribe(c, { query: 'pending_orders', params: ['pending'] })));
      assert.equal(new Set(subs.map((s) => s.sub)).size, 100, 'subscription ids are distinct');
      const fresh = sortBy(await select(db, PENDING_FRESH));
      for (const s of subs) assert.deepEqual(sortBy(s.rows), fresh, 'every ack holds the current rows');
      let lq = await liveStats(srv);
      assert.equal(lq.instances, 1, `100 subscriptions to one (query, params): ${JSON.stringify(lq)}`);
      assert.equal(lq.subscriptions, 100);

      const e0 = await settledEvaluations(srv);
      await sqlite3(db, "INSERT INTO orders(id, status, total) VALUES (70, 'pending', 70.5)");
      const expected = { inserted: [{ id: 70, status: 'pending', total: 70.5 }], updated: [], deleted: [] };
      await Promise.all(clients.map(async (c, i) => {
        const msg = await nextPush(c, subs[i].sub, `client ${i}`);
        assert.deepEqual(msg, { type: 'query_diff', subscription: subs[i].sub, ...expected }, `client ${i}`);
      }));
      await expectQuiet(clients, 'after the one diff');
      lq = await liveStats(srv);
      assert.equal(lq.evaluations, e0 + 1, `one commit, 100 subscribers: evaluations ${e0} -> ${lq.evaluations}`);
      assert.equal(lq.instances, 1);

      const other = await connect(srv.url);
      const shipped = await subscribe(other, { query: 'pending_orders', params: ['shipped'] });
      assert.deepEqual(sortBy(shipped.rows), sortBy(await select(db, "SELECT id, status, total FROM orders WHERE status = 'shipped'")));
      lq = await liveStats(srv);
      assert.equal(lq.instances, 2, `different params are a separate instance: ${JSON.stringify(lq)}`);
      assert.equal(lq.subscriptions, 101);
      const again = await subscribe(other, { query: 'pending_orders', params: ['pending'] });
      assert.deepEqual(sortBy(again.rows), sortBy(await select(db, PENDING_FRESH)));
      lq = await liveStats(srv);
      assert.equal(lq.instances, 2, `same params join the existing instance: ${JSON.stringify(lq)}`);
      assert.equal(lq.subscriptions, 102);

      // A shipped-only change reaches the shipped subscription alone.
      await sqlite3(db, 'UPDATE orders SET total = 0.5 WHERE id = 13');
      const msg = await nextPush(other, shipped.sub, 'shipped update');
      assert.deepEqual(msg, {
        type: 'query_diff', subscription: shipped.sub, inserted: [], updated: [{ id: 13, status: 'shipped', total: 0.5 }], deleted: [],
      });
      await expectQuiet([...clients, other], 'pending subscribers after a shipped-only change');
    });
  });
});

describe('query_unsubscribe', () => {
  it('stops pushes for that subscription only; unknown or foreign ids get unknown_query', T, async () => {
    await withLive({}, async ({ srv, db }) => {
      const a = await connect(srv.url);
      const b = await connect(srv.url);
      const s1 = await subscribe(a, { query: 'pending_orders', params: ['pending'] });
      const s2 = await subscribe(a, { query: 'pending_orders', params: ['pending'] });
      assert.notEqual(s1.sub, s2.sub);
      assert.equal((await liveStats(srv)).subscriptions, 2);

      // b may not unsubscribe a's subscription.
      let id = nextId++;
      assertErrorReply(await b.request({ type: 'query_unsubscribe', subscription: s1.sub, id }, REPLY_TIMEOUT), 'unknown_query', id);
      await unsubscribe(a, s1.sub);
      assert.equal((await liveStats(srv)).subscriptions, 1);
      id = nextId++;
      assertErrorReply(await a.request({ type: 'query_unsubscribe', subscription: s1.sub, id }, REPLY_TIMEOUT), 'unknown_query', id);
      id = nextId++;
      assertErrorReply(await a.request({ type: 'query_unsubscribe', subscription: 'no-such-subscription', id }, REPLY_TIMEOUT),
        'unknown_query', id);

      await sqlite3(db, "INSERT INTO orders(id, status, total) VALUES (80, 'pending', 8)");
      const msg = await nextPush(a, s2.sub, 'remaining subscription');
      assert.deepEqual(msg, {
        type: 'query_diff', subscription: s2.sub, inserted: [{ id: 80, status: 'pending', total: 8 }], updated: [], deleted: [],
      });
      await expectQuiet([a, b], 'no push for the unsubscribed one');

      await unsubscribe(a, s2.sub);
      assert.equal((await liveStats(srv)).subscriptions, 0);
      await sqlite3(db, 'DELETE FROM orders WHERE id = 80');
      await expectQuiet([a, b], 'no push after the last unsubscribe');
    });
  });

  it('a disconnect removes all of the client\'s subscriptions', T, async () => {
    await withLive({}, async ({ srv, db }) => {
      const a = await connect(srv.url);
      const b = await connect(srv.url);
      await subscribe(a, { query: 'pending_orders', params: ['pending'] });
      await subscribe(a, { query: 'pending_orders', params: ['pending'] });
      await subscribe(a, { query: 'status_counts' });
      const sb = await subscribe(b, { query: 'pending_orders', params: ['pending'] });
      assert.equal((await liveStats(srv)).subscriptions, 4);
      a.terminate();
      await liveStatsWhen(srv, (lq) => lq.subscriptions === 1, 'subscriptions 4 -> 1 after the disconnect');
      await sqlite3(db, "INSERT INTO orders(id, status, total) VALUES (81, 'pending', 8.5)");
      const msg = await nextPush(b, sb.sub, 'the other client still gets its push');
      assert.equal(msg.type, 'query_diff');
      assert.deepEqual(msg.inserted, [{ id: 81, status: 'pending', total: 8.5 }]);
      await b.close();
      await liveStatsWhen(srv, (lq) => lq.subscriptions === 0, 'subscriptions 1 -> 0 after a close');
    });
  });
});

describe('errors', () => {
  it('unknown name, raw SQL by default, parameter count mismatch, SQL error', T, async () => {
    await withLive({}, async ({ srv }) => {
      const c = await connect(srv.url);
      await subscribeFails(c, { query: 'no_such_query', params: [] }, 'unknown_query');
      await subscribeFails(c, { sql: 'SELECT id FROM orders' }, 'query_not_allowed');
      await subscribeFails(c, { sql: 'SELECT id FROM orders WHERE status = $1', params: ['pending'] }, 'query_not_allowed');
      await subscribeFails(c, { query: 'pending_orders', params: [] }, 'query_error');
      await subscribeFails(c, { query: 'pending_orders' }, 'query_error');
      await subscribeFails(c, { query: 'pending_orders', params: ['pending', 'extra'] }, 'query_error');
      await subscribeFails(c, { query: 'status_counts', params: ['unexpected'] }, 'query_error');
      assert.equal((await liveStats(srv)).subscriptions, 0, 'no refused subscribe created a subscription');
      // The connection is still usable.
      await subscribe(c, { query: 'pending_orders', params: ['pending'] });
    });
  });

  it('allowRawSql: a SELECT works and is live; writes, several statements and SQL errors are refused', T, async () => {
    await withLive({ liveQueries: { allowRawSql: true } }, async ({ srv, db }) => {
      const c = await connect(srv.url);
      for (const sql of [
        "INSERT INTO orders(status, total) VALUES ('pending', 1)",
        "UPDATE orders SET status = 'x'",
        'DELETE FROM orders',
        'DROP TABLE orders',
        'CREATE TABLE evil(x)',
        "SELECT 1; DELETE FROM orders",
        'SELECT 1; SELECT 2',
      ]) {
        const err = await subscribeFails(c, { sql }, 'query_not_allowed');
        assert.ok(err.message.length > 0, sql);
      }
      assert.equal((await select(db, 'SELECT count(*) AS n FROM orders'))[0].n, 13, 'no refused statement ran');
      await subscribeFails(c, { sql: 'SELEC id FROM orders' }, 'query_error');
      await subscribeFails(c, { sql: 'SELECT id FROM no_such_table' }, 'query_error');
      await subscribeFails(c, { sql: 'SELECT id FROM orders WHERE total > $1', params: [] }, 'query_error');

      const sql = 'SELECT id, total FROM orders WHERE total > $1';
      const { sub, columns, rows } = await subscribe(c, { sql, params: [100] });
      assert.deepEqual(columns, ['id', 'total']);
      const fresh = 'SELECT id, total FROM orders WHERE total > 100';
      assert.deepEqual(sortBy(rows), sortBy(await select(db, fresh)));
      const m = new Mirror(rows, columns);
      await sqlite3(db, "INSERT INTO orders(id, status, total) VALUES (90, 'pending', 900.5)");
      const msg = await nextPush(c, sub, 'raw query insert');
      assert.deepEqual(msg, { type: 'query_diff', subscription: sub, inserted: [{ id: 90, total: 900.5 }], updated: [], deleted: [] });
      m.apply(msg, sub, 'raw query insert');
      assert.deepEqual(m.sorted(), sortBy(await select(db, fresh)));
    });
  });

  it('liveQueries.timeout 100: a query running past it fails with query_timeout, promptly; the server stays responsive', T, async () => {
    const queries = {
      ...QUERIES,
      slow: { sql: 'WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000) SELECT count(*) AS n FROM c' },
    };
    await withLive({ queries, liveQueries: { timeout: 100 } }, async ({ srv }) => {
      const c = await connect(srv.url);
      const t0 = Date.now();
      await subscribeFails(c, { query: 'slow' }, 'query_timeout');
      const elapsed = Date.now() - t0;
      assert.ok(elapsed < 3000, `query_timeout after ${elapsed} ms with a 100 ms budget`);
      // Pub/sub and other queries are unaffected.
      const p = await connect(srv.url);
      assert.deepEqual(await p.request({ type: 'subscribe', channel: 'ping', id: 1 }), { type: 'ack', id: 1 });
      await subscribe(c, { query: 'pending_orders', params: ['pending'] });
      assert.equal((await liveStats(srv)).subscriptions, 1, 'the timed-out subscription does not exist');
    });
  });

  it('liveQueries.maxRows 2: 3 rows are query_too_large, 2 rows are fine; maxBytes likewise', T, async () => {
    const queries = {
      three: { sql: 'SELECT id, status FROM orders WHERE id <= 3' },
      two: { sql: 'SELECT id, status FROM orders WHERE id <= 2' },
      big: { sql: 'SELECT 1 AS id, hex(zeroblob(1000)) AS h' },
      small: { sql: 'SELECT 1 AS id, hex(zeroblob(100)) AS h' },
    };
    await withLive({ queries, liveQueries: { maxRows: 2, maxBytes: 1024 } }, async ({ srv }) => {
      const c = await connect(srv.url);
      await subscribeFails(c, { query: 'three' }, 'query_too_large');
      const two = await subscribe(c, { query: 'two' });
      assert.deepEqual(two.rows, [{ id: 1, status: 'pending' }, { id: 2, status: 'pending' }]);
      await subscribeFails(c, { query: 'big' }, 'query_too_large');
      const small = await subscribe(c, { query: 'small' });
      assert.deepEqual(small.rows, [{ id: 1, h: '00'.repeat(100) }]);
    });
  });
});

describe('row encoding', () => {
  it('INTEGER (exact 64-bit), REAL, TEXT, NULL and BLOB (base64) in the ack and in diffs', T, async () => {
    const seed = `INSERT INTO kinds(id, i, r, t, b, n) VALUES
      (1, 9223372036854775807, 0.1, 'héllo ✓ "q" \\ 😀', x'00FF10', NULL),
      (2, -9223372036854775808, -2.5e-300, '', x'', NULL),
      (3, 0, 1e300, NULL, NULL, 42),
      (4, 9007199254740993, 3.0, 'x', x'666F6F62', 1.5);`;
    await withLive({ seed }, async ({ srv, db }) => {
      const c = await connect(srv.url);
      const id = nextId++;
      c.send(subscribeCmd({ query: 'kinds' }, id));
      const item = await c.nextItem(REPLY_TIMEOUT);
      const ack = item.json;
      assertAck(ack, id);
      assert.deepEqual(ack.columns, ['id', 'i', 'r', 't', 'b', 'n']);
      const rows = sortBy(ack.rows);
      assert.deepEqual(rows[0], { id: 1, i: 9223372036854775807, r: 0.1, t: 'héllo ✓ "q" \\ 😀', b: { $base64: 'AP8Q' }, n: null });
      assert.deepEqual(rows[1], { id: 2, i: -9223372036854775808, r: -2.5e-300, t: '', b: { $base64: '' }, n: null });
      assert.deepEqual(rows[2], { id: 3, i: 0, r: 1e300, t: null, b: null, n: 42 });
      assert.deepEqual(rows[3], { id: 4, i: 9007199254740993, r: 3, t: 'x', b: { $base64: 'Zm9vYg==' }, n: 1.5 });
      // JSON.parse rounds beyond 2^53: the text must carry the exact integers, as integers.
      for (const n of ['9223372036854775807', '-9223372036854775808', '9007199254740993']) {
        assert.match(item.raw, new RegExp(`"i"\\s*:\\s*${n}\\s*[,}]`), `exact integer ${n} in ${item.raw}`);
      }

      await sqlite3(db, "UPDATE kinds SET b = x'DEADBEEF', r = 1.25, t = NULL, n = x'' WHERE id = 3");
      const msg = await nextPush(c, ack.subscription, 'blob update');
      assertDiffShape(msg, ack.subscription, ack.columns, 'blob update');
      assert.deepEqual(msg.updated, [{ id: 3, i: 0, r: 1.25, t: null, b: { $base64: '3q2+7w==' }, n: { $base64: '' } }]);
      assert.deepEqual([msg.inserted, msg.deleted], [[], []]);
    });
  });

  it('duplicate column names get ":2", ":3" suffixes; infinite REAL values are null', T, async () => {
    const queries = {
      dups: { sql: 'SELECT 1 AS a, 2 AS a, 3 AS a, 4 AS b' },
      inf: { sql: 'SELECT 1 AS id, 9e999 AS pos, -9e999 AS neg' },
    };
    await withLive({ queries }, async ({ srv }) => {
      const c = await connect(srv.url);
      const dups = await subscribe(c, { query: 'dups' });
      assert.deepEqual(dups.columns, ['a', 'a:2', 'a:3', 'b']);
      assert.deepEqual(dups.rows, [{ a: 1, 'a:2': 2, 'a:3': 3, b: 4 }]);
      const inf = await subscribe(c, { query: 'inf' });
      assert.deepEqual(inf.rows, [{ id: 1, pos: null, neg: null }]);
    });
  });
});

describe('database setup', () => {
  it('database.path is created when missing and database.setup runs; another process then writes to it', T, async () => {
    const setup = 'CREATE TABLE IF NOT EXISTS notes(id INTEGER PRIMARY KEY, body TEXT); '
      + "INSERT OR IGNORE INTO notes(id, body) VALUES (1, 'first'), (2, 'n2'), (3, 'n3'), (4, 'n4'), (5, 'n5');";
    const queries = { notes: { sql: 'SELECT id, body FROM notes' } };
    await withLive({ createDb: false, queries, database: { setup } }, async ({ srv, db }) => {
      assert.ok(existsSync(db), `${db} created at start`);
      const c = await connect(srv.url);
      const { sub, columns, rows } = await subscribe(c, { query: 'notes' });
      assert.deepEqual(columns, ['id', 'body']);
      // Five rows: larger than a one-row diff, so the push is a query_diff.
      assert.deepEqual(sortBy(rows), [{ id: 1, body: 'first' }, { id: 2, body: 'n2' }, { id: 3, body: 'n3' },
        { id: 4, body: 'n4' }, { id: 5, body: 'n5' }]);
      await sqlite3(db, "INSERT INTO notes(id, body) VALUES (6, 'sixth')");
      const msg = await nextPush(c, sub, 'insert into the setup table');
      assert.deepEqual(msg, { type: 'query_diff', subscription: sub, inserted: [{ id: 6, body: 'sixth' }], updated: [], deleted: [] });
    });
  });
});

describe('requireAuth', () => {
  const token = (permissions) => sign({ sub: 'user-1', permissions }, SECRET, 'HS256', { expiresIn: '1h' });
  const config = { requireAuth: true, jwtSecret: SECRET };

  it('a named query\'s permission is required (forbidden), patterns grant it, a query without one is open; raw SQL needs query:raw', T, async () => {
    await withLive({ config, liveQueries: { allowRawSql: true } }, async ({ srv, db }) => {
      const lacking = await connectWithToken(srv, 'query', token(['read:customers', 'write:orders']));
      await subscribeFails(lacking, { query: 'pending_orders', params: ['pending'] }, 'forbidden');
      await subscribeFails(lacking, { sql: 'SELECT id FROM orders' }, 'query_not_allowed');
      const open = await subscribe(lacking, { query: 'status_counts' });
      assert.deepEqual(open.rows, await select(db, 'SELECT status, count(*) AS n FROM orders GROUP BY status ORDER BY status'));

      const exact = await connectWithToken(srv, 'query', token(['read:orders']));
      const s1 = await subscribe(exact, { query: 'pending_orders', params: ['pending'] });
      const star = await connectWithToken(srv, 'authorization', token(['read:*']));
      const s2 = await subscribe(star, { query: 'pending_orders', params: ['pending'] });
      await subscribeFails(star, { sql: 'SELECT id FROM orders' }, 'query_not_allowed');

      const raw = await connectWithToken(srv, 'query', token(['query:raw']));
      const r = await subscribe(raw, { sql: 'SELECT id, total FROM orders WHERE id = $1', params: [3] });
      assert.deepEqual(r.rows, [{ id: 3, total: 30.5 }]);
      await subscribeFails(raw, { query: 'pending_orders', params: ['pending'] }, 'forbidden');

      // The refused subscriptions do not exist: after a commit only the granted ones get a push.
      await sqlite3(db, "INSERT INTO orders(id, status, total) VALUES (95, 'pending', 9.5)");
      const diff = { inserted: [{ id: 95, status: 'pending', total: 9.5 }], updated: [], deleted: [] };
      assert.deepEqual(await nextPush(exact, s1.sub, 'read:orders'), { type: 'query_diff', subscription: s1.sub, ...diff });
      assert.deepEqual(await nextPush(star, s2.sub, 'read:*'), { type: 'query_diff', subscription: s2.sub, ...diff });
      const counts = await nextPush(lacking, open.sub, 'status_counts');
      assert.equal(counts.type, 'query_result');
      await expectQuiet([lacking, exact, star, raw], 'no other push');
    });
  });
});
