// Keep-alive (issue #2, section 2) with pingInterval 300 ms: the server pings,
// closes a peer that has not answered by the next ping (3001), keeps peers that
// answer, and answers client pings with the same payload.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { cleanup, connect, sleep, startServer } from '../helpers/server.mjs';
import { OP, RawClient } from '../helpers/raw.mjs';

const T = { timeout: 15000 };
const INTERVAL = 300;

let srv;

before(async () => { srv = await startServer({ config: { pingInterval: INTERVAL } }); }, { timeout: 15000 });

after(async () => {
  cleanup();
  await srv?.stop();
}, { timeout: 15000 });

describe('server pings (pingInterval 300 ms)', () => {
  it('a ws client receives pings and, answering them, stays connected', T, async () => {
    const c = await connect(srv.url);
    const t0 = Date.now();
    await sleep(6 * INTERVAL);
    const elapsed = Date.now() - t0;
    assert.equal(c.closeInfo, null, `closed: ${JSON.stringify(c.closeInfo)}`);
    assert.ok(c.pings.length >= 3, `${c.pings.length} pings in ${elapsed} ms`);
    assert.ok(c.pings.length <= Math.ceil(elapsed / INTERVAL) + 2, `${c.pings.length} pings in ${elapsed} ms: too many`);
    assert.deepEqual(await c.request({ type: 'subscribe', channel: 'ka', id: 1 }), { type: 'ack', id: 1 });
    await c.close();
  });

  it('server pings are unmasked, FIN, at most 125 bytes', T, async () => {
    const c = await RawClient.connect(srv.port, { autoPong: true });
    const f = await c.nextFrame(3 * INTERVAL + 1000);
    assert.ok(f, 'a frame arrived');
    assert.equal(f.opcode, OP.PING);
    assert.equal(f.fin, true);
    assert.equal(f.masked, false);
    assert.equal(f.rsv, 0);
    assert.ok(f.payload.length <= 125);
    c.destroy();
  });

  it('a raw client that answers with pongs stays connected', T, async () => {
    const c = await RawClient.connect(srv.port, { autoPong: true });
    await sleep(6 * INTERVAL);
    assert.equal(c.ended, false, 'connection still open');
    const pings = c.frames.filter((f) => f.opcode === OP.PING).length;
    assert.ok(pings >= 3, `${pings} pings`);
    assert.ok(!c.frames.some((f) => f.opcode === OP.CLOSE), 'no close frame');
    c.frames.length = 0;
    c.sendJSON({ type: 'subscribe', channel: 'ka', id: 2 });
    assert.deepEqual(await c.nextMessage(), { type: 'ack', id: 2 });
    c.destroy();
  });

  it('a client that never answers pings is closed after about two intervals', T, async () => {
    const silent = await RawClient.connect(srv.port);
    const alive = await connect(srv.url);
    const t0 = Date.now();
    const deadline = t0 + 10 * INTERVAL + 2000;
    let firstPing = null;
    let closeFrame = null;
    while (!silent.ended && Date.now() < deadline) {
      const f = await silent.nextFrame(Math.max(1, deadline - Date.now())).catch(() => null);
      if (f && f.opcode === OP.PING && firstPing === null) firstPing = Date.now();
      if (f && f.opcode === OP.CLOSE) { closeFrame = f; break; }
    }
    const cutAt = closeFrame ? Date.now() : silent.endedAt ?? Date.now();
    assert.ok(closeFrame || silent.ended, `silent client still connected after ${cutAt - t0} ms`);
    if (closeFrame) {
      assert.equal(closeFrame.code, 3001, `close code ${closeFrame.code} "${closeFrame.reason}"`);
      // The peer is presumed dead: the server does not wait for a close reply.
      await silent.waitEnd(5000);
    }
    assert.ok(firstPing !== null, 'the server pinged before cutting the client');
    const sincePing = cutAt - firstPing;
    assert.ok(sincePing >= 0.8 * INTERVAL, `cut ${sincePing} ms after the first ping: no time to answer`);
    assert.ok(cutAt - t0 <= 4 * INTERVAL + 1000, `cut only after ${cutAt - t0} ms`);
    // The ws client (auto-pong) is unaffected.
    assert.equal(alive.closeInfo, null);
    assert.deepEqual(await alive.request({ type: 'subscribe', channel: 'ka', id: 3 }), { type: 'ack', id: 3 });
    await alive.close();
  });

  it('a silent client that was subscribed leaves its channel', T, async () => {
    const silent = await RawClient.connect(srv.port);
    silent.sendJSON({ type: 'subscribe', channel: 'ka:gone', id: 1 });
    assert.deepEqual(await silent.nextMessage(), { type: 'ack', id: 1 });
    await silent.waitEnd(4 * INTERVAL + 3000);
    const pub = await connect(srv.url);
    assert.deepEqual(await pub.request({ type: 'publish', channel: 'ka:gone', data: 1, id: 2 }),
      { type: 'ack', id: 2, delivered: 0 });
    await pub.close();
  });
});

describe('client pings', () => {
  it('ws: ping payloads come back in pongs', T, async () => {
    const c = await connect(srv.url);
    for (const payload of [Buffer.from('hello'), Buffer.alloc(0), Buffer.alloc(125, 7)]) {
      const before = c.pongs.length;
      c.ws.ping(payload);
      await c.waitUntil(() => c.pongs.length > before, 3000, 'pong');
      assert.deepEqual(c.pongs[before], payload);
    }
    await c.close();
  });
});
