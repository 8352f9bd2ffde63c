// Opening handshake (issue #2, section 2): RFC 6455 4.2.1 validation, the
// 4xx refusals, the request-head limit (431), the handshake timeout and the
// plain HTTP health endpoint.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { cleanup, connect, sleep, startServer, withTimeout } from '../helpers/server.mjs';
import {
  acceptKey, httpRequest, newKey, openSocket, parseHead, RawClient, upgradeRequest,
} from '../helpers/raw.mjs';

const T = { timeout: 15000 };

let srv;
let slow; // handshakeTimeout 500 ms

before(async () => {
  srv = await startServer();
  slow = await startServer({ config: { handshakeTimeout: 500 } });
}, { timeout: 30000 });

after(async () => {
  cleanup();
  const results = await Promise.allSettled([srv?.stop(), slow?.stop()]);
  for (const r of results) if (r.status === 'rejected') throw r.reason;
}, { timeout: 30000 });

/** Sends an upgrade request built from `opts` and returns the response. */
function upgrade(opts) {
  return httpRequest(srv.port, upgradeRequest(opts));
}

/** A subscribe round trip over an upgraded raw socket proves it is a live WebSocket. */
async function assertLiveWebSocket(sock, rest) {
  const client = new RawClient(sock, rest);
  client.sendJSON({ type: 'subscribe', channel: 'hs', id: 1 });
  assert.deepEqual(await client.nextMessage(), { type: 'ack', id: 1 });
  client.destroy();
}

describe('upgrade accepted', () => {
  it('answers 101 with the RFC 6455 Sec-WebSocket-Accept', T, async () => {
    const key = 'dGhlIHNhbXBsZSBub25jZQ==';
    const res = await httpRequest(srv.port, upgradeRequest({ key }), { keepOpen: true });
    assert.equal(res.status, 101);
    assert.equal(res.headers['sec-websocket-accept'], 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
    assert.equal(acceptKey(key), 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
    assert.equal(res.headers.upgrade.toLowerCase(), 'websocket');
    assert.match(res.headers.connection, /\bupgrade\b/i);
    assert.equal(res.body.length, 0, 'no bytes after the 101 head');
    await assertLiveWebSocket(res.socket, Buffer.alloc(0));
  });

  it('accepts the npm ws client (which also offers permessage-deflate)', T, async () => {
    const c = await connect(srv.url);
    assert.deepEqual(await c.request({ type: 'subscribe', channel: 'hs', id: 2 }), { type: 'ack', id: 2 });
    assert.equal(c.ws.extensions, '', 'no extension negotiated');
    assert.deepEqual(await c.close(1000), { code: 1000, reason: '' });
  });

  it('accepts Connection: "keep-alive, Upgrade" (token list, any case)', T, async () => {
    for (const connection of ['keep-alive, Upgrade', 'Upgrade, keep-alive', 'keep-alive,upgrade', 'UPGRADE']) {
      const key = newKey();
      const res = await httpRequest(srv.port, upgradeRequest({ key, headers: { Connection: connection } }),
        { keepOpen: true });
      assert.equal(res.status, 101, `Connection: ${connection}`);
      assert.equal(res.headers['sec-websocket-accept'], acceptKey(key));
      res.socket.destroy();
    }
  });

  it('accepts Upgrade: WebSocket in any case', T, async () => {
    const res = await upgrade({ headers: { Upgrade: 'WebSocket' } });
    assert.equal(res.status, 101);
  });

  it('accepts a query string on the endpoint path', T, async () => {
    const res = await upgrade({ path: '/ws?token=abc' });
    assert.equal(res.status, 101);
  });

  it('accepts a request head that arrives byte by byte', T, async () => {
    const key = newKey();
    const req = Buffer.from(upgradeRequest({ key }));
    const sock = await openSocket(srv.port);
    let buf = Buffer.alloc(0);
    const got = new Promise((resolve) => sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (buf.includes('\r\n\r\n')) resolve();
    }));
    for (let i = 0; i < req.length; i++) {
      sock.write(req.subarray(i, i + 1));
      if (i % 4 === 0) await sleep(1);
    }
    await withTimeout(got, 3000, '101 response');
    const head = parseHead(buf);
    assert.equal(head.status, 101);
    assert.equal(head.headers['sec-websocket-accept'], acceptKey(key));
    sock.destroy();
  });

  it('accepts a head just under the 8 KiB limit', T, async () => {
    const res = await upgrade({ headers: { 'X-Filler': 'a'.repeat(6 * 1024) } });
    assert.equal(res.status, 101);
  });
});

describe('upgrade refused', () => {
  it('404 for a path other than /ws', T, async () => {
    for (const path of ['/other', '/', '/ws/extra', '/wss']) {
      const res = await upgrade({ path });
      assert.equal(res.status, 404, `path ${path}`);
    }
  });

  it('405 or 400 for a method other than GET', T, async () => {
    for (const method of ['POST', 'PUT', 'HEAD', 'DELETE']) {
      const res = await upgrade({ method, headers: { 'Content-Length': '0' } });
      assert.ok([400, 405].includes(res.status), `${method} -> ${res.status}`);
    }
  });

  it('426 with Sec-WebSocket-Version: 13 for version 8', T, async () => {
    const res = await upgrade({ headers: { 'Sec-WebSocket-Version': '8' } });
    assert.equal(res.status, 426);
    assert.equal(res.headers['sec-websocket-version'], '13');
  });

  it('426 with Sec-WebSocket-Version: 13 when the version header is missing or garbage', T, async () => {
    for (const v of [null, 'abc', '14']) {
      const res = await upgrade({ headers: { 'Sec-WebSocket-Version': v } });
      assert.ok([400, 426].includes(res.status), `version ${v} -> ${res.status}`);
      if (res.status === 426) assert.equal(res.headers['sec-websocket-version'], '13');
    }
  });

  it('400 for a Sec-WebSocket-Key that does not decode to 16 bytes', T, async () => {
    const keys = [
      Buffer.alloc(15, 1).toString('base64'), // 15 bytes
      Buffer.alloc(17, 1).toString('base64'), // 17 bytes
      'not base64 at all!!!!!==',
      'dGhlIHNhbXBsZSBub25jZQ', // 16 bytes but unpadded (22 chars)
      '',
    ];
    for (const key of keys) {
      const res = await upgrade({ key });
      assert.equal(res.status, 400, `key ${JSON.stringify(key)}`);
    }
    const missing = await upgrade({ headers: { 'Sec-WebSocket-Key': null } });
    assert.equal(missing.status, 400, 'missing key');
  });

  it('refuses a missing or wrong Upgrade header', T, async () => {
    for (const up of [null, 'h2c', 'websocket2']) {
      const res = await upgrade({ headers: { Upgrade: up } });
      assert.ok([400, 426].includes(res.status), `Upgrade ${up} -> ${res.status}`);
    }
  });

  it('refuses a Connection header without the upgrade token', T, async () => {
    for (const connection of [null, 'keep-alive', 'close', 'upgrades']) {
      const res = await upgrade({ headers: { Connection: connection } });
      assert.ok([400, 426].includes(res.status), `Connection ${connection} -> ${res.status}`);
    }
  });

  it('400 for HTTP/1.0 or a missing Host', T, async () => {
    const old = await upgrade({ version: 'HTTP/1.0' });
    assert.ok([400, 505].includes(old.status), `HTTP/1.0 -> ${old.status}`);
    const noHost = await upgrade({ headers: { Host: null } });
    assert.equal(noHost.status, 400, 'missing Host');
  });

  it('400 for a request line that is not HTTP', T, async () => {
    const res = await httpRequest(srv.port, 'HELLO\r\n\r\n');
    assert.equal(res.status, 400);
  });

  it('431 for a complete head over the default 8 KiB', T, async () => {
    const res = await upgrade({ headers: { 'X-Filler': 'a'.repeat(9 * 1024) } });
    assert.equal(res.status, 431);
  });

  it('431 for an unterminated head as soon as it passes the limit', T, async () => {
    const req = upgradeRequest().replace(/\r\n\r\n$/, '\r\n') + `X-Filler: ${'b'.repeat(12 * 1024)}`;
    const t0 = Date.now();
    const res = await httpRequest(srv.port, req, { timeout: 5000 });
    assert.equal(res.status, 431);
    assert.ok(Date.now() - t0 < 3000, 'answered without waiting for the end of the head');
  });

  it('closes the connection after a refusal', T, async () => {
    const res = await httpRequest(srv.port, upgradeRequest({ path: '/nope' }), { keepOpen: true });
    assert.equal(res.status, 404);
    await withTimeout(res.socketClosed, 3000, 'server to close the socket after a 404');
  });
});

describe('handshake timeout (handshakeTimeout 500 ms)', () => {
  it('drops a client that sends half a request', T, async () => {
    const sock = await openSocket(slow.port);
    const t0 = Date.now();
    const closed = new Promise((resolve) => sock.on('close', () => resolve(Date.now() - t0)));
    sock.on('data', () => {});
    sock.on('error', () => {});
    sock.write('GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n');
    const elapsed = await Promise.race([closed, sleep(4000).then(() => -1)]);
    sock.destroy();
    assert.notEqual(elapsed, -1, 'socket still open after 4 s');
    assert.ok(elapsed >= 400, `closed after ${elapsed} ms, before the 500 ms timeout`);
  });

  it('drops a client that sends nothing', T, async () => {
    const sock = await openSocket(slow.port);
    const t0 = Date.now();
    const closed = new Promise((resolve) => sock.on('close', () => resolve(Date.now() - t0)));
    sock.on('data', () => {});
    sock.on('error', () => {});
    const elapsed = await Promise.race([closed, sleep(4000).then(() => -1)]);
    sock.destroy();
    assert.notEqual(elapsed, -1, 'socket still open after 4 s');
    assert.ok(elapsed >= 400, `closed after ${elapsed} ms`);
  });

  it('does not apply to an upgraded connection', T, async () => {
    const c = await connect(slow.url);
    await sleep(1500);
    assert.equal(c.closeInfo, null, 'upgraded connection must stay open');
    assert.deepEqual(await c.request({ type: 'subscribe', channel: 'late', id: 3 }), { type: 'ack', id: 3 });
    await c.close();
  });
});

describe('GET /health', () => {
  it('answers 200 with a JSON body', T, async () => {
    const res = await httpRequest(srv.port, 'GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    assert.equal(res.status, 200);
    assert.match(res.headers['content-type'] ?? '', /^application\/json\b/);
    const body = JSON.parse(res.body.toString('utf8'));
    assert.equal(typeof body, 'object');
    assert.ok(body !== null && !Array.isArray(body), 'body is a JSON object');
  });

  it('is served on a server with another handshake timeout too, and by fetch', T, async () => {
    const res = await fetch(`http://127.0.0.1:${slow.port}/health`, { signal: AbortSignal.timeout(5000) });
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.equal(typeof body, 'object');
  });
});
