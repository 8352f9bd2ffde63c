// Authentication (issue #3, section 1) end to end against realtimed: tokens
// minted by npm jsonwebtoken for HS256, RS256 and ES256 carried by each
// transport (?token=, Authorization: Bearer, Sec-WebSocket-Protocol, the first
// {"type":"auth"} message); every invalid kind refused (401 on the upgrade,
// invalid_token/token_expired for the auth message); the leeway; auth_required
// and the 4001 auth timeout; token expiry while connected (push, grace, 3005);
// API keys; the start-up refusal without a key; no token in the logs.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { cleanup, connect, sleep, startServer, withTimeout } from '../helpers/server.mjs';
import {
  AUTH_REQUIRED_MESSAGE, UPGRADE_TRANSPORTS, assertErrorReply, assertUnauthorized, connectWithToken,
  corruptSignature, hmacToken, makeKeyPairs, malformedTokens, nowSeconds, rawUpgrade, runDaemon, sign,
  startServers, tamperPayload, unsignedToken,
} from '../helpers/auth.mjs';

const T = { timeout: 30000 };
const SECRET = 'integration-test-secret-4f1c9a7e2b';
const API_KEY = 'secret-api-key-123';
const API_KEY_PERMS = ['read:metrics', 'write:metrics'];
const CLAIMS = { sub: 'user-123', permissions: ['read:*', 'write:*'] };
const GRACE_MS = 2000;
const AUTH_TIMEOUT_MS = 500;

let dir;
let keys;
let hs;     // jwtSecret, default leeway (30 s) and authTimeout (10 s), apiKeys
let rs;     // jwtPublicKeyFile = RSA 2048 public key
let es;     // jwtPublicKeyFile = EC P-256 public key
let hsAlgs; // jwtSecret with jwtAlgorithms ["HS384", "HS512"]
let strict; // jwtSecret, jwtLeeway 0, tokenExpiryGrace 2000, authTimeout 500

before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'rt-auth-'));
  keys = makeKeyPairs(dir);
  [hs, rs, es, hsAlgs, strict] = await startServers([
    {
      config: {
        requireAuth: true, jwtSecret: SECRET,
        apiKeys: [{ key: API_KEY, name: 'metrics-bot', permissions: API_KEY_PERMS }],
      },
    },
    { config: { requireAuth: true, jwtPublicKeyFile: keys.rsa.file } },
    { config: { requireAuth: true, jwtPublicKeyFile: keys.ec.file } },
    { config: { requireAuth: true, jwtSecret: SECRET, jwtAlgorithms: ['HS384', 'HS512'] } },
    {
      config: {
        requireAuth: true, jwtSecret: SECRET, jwtLeeway: 0, tokenExpiryGrace: GRACE_MS,
        authTimeout: AUTH_TIMEOUT_MS,
      },
    },
  ]);
}, { timeout: 60000 });

after(async () => {
  cleanup();
  const results = await Promise.allSettled([hs, rs, es, hsAlgs, strict].map((s) => s?.stop()));
  if (dir) rmSync(dir, { recursive: true, force: true });
  for (const r of results) if (r.status === 'rejected') throw r.reason;
}, { timeout: 30000 });

/** Proves `c` is authenticated with read:* and write:*: subscribe, publish, receive. */
async function assertServes(c, channel = 'room') {
  assert.deepEqual(await c.request({ type: 'subscribe', channel, id: 1 }), { type: 'ack', id: 1 });
  c.send({ type: 'publish', channel, data: { n: 1 }, id: 2 });
  const got = (await c.nextN(2)).sort((a, b) => a.type.localeCompare(b.type));
  assert.deepEqual(got, [{ type: 'ack', id: 2, delivered: 1 }, { type: 'message', channel, data: { n: 1 } }]);
}

/** Sends {"type":"auth"} with `fields` and returns the reply. */
function auth(c, fields, id) {
  return c.request({ type: 'auth', ...fields, id });
}

/** The exact ack of a successful auth message. */
function authAck(id, userId = CLAIMS.sub, permissions = CLAIMS.permissions) {
  return { type: 'ack', id, userId, permissions };
}

/**
 * The algorithm suites: how to mint a valid token for the server, and the
 * invalid tokens that server must refuse, each [label, token, expectedCode].
 */
const SUITES = {
  HS256: {
    server: () => hs,
    valid: (claims = CLAIMS, opts = {}) => sign(claims, SECRET, 'HS256', { expiresIn: '1h', ...opts }),
    wrongAlgorithm: () => [
      ['RS256 token (RSA key) on an HS256 server', sign(CLAIMS, keys.rsa.privateKey, 'RS256', { expiresIn: '1h' })],
      ['ES256 token (EC key) on an HS256 server', sign(CLAIMS, keys.ec.privateKey, 'ES256', { expiresIn: '1h' })],
      ['HS512 with the right secret (algorithm not configured)', sign(CLAIMS, SECRET, 'HS512', { expiresIn: '1h' })],
      ['HS384 with the right secret (algorithm not configured)', sign(CLAIMS, SECRET, 'HS384', { expiresIn: '1h' })],
    ],
    wrongKey: () => sign(CLAIMS, 'some-other-secret', 'HS256', { expiresIn: '1h' }),
  },
  RS256: {
    server: () => rs,
    valid: (claims = CLAIMS, opts = {}) => sign(claims, keys.rsa.privateKey, 'RS256', { expiresIn: '1h', ...opts }),
    wrongAlgorithm: () => {
      const claims = { ...CLAIMS, exp: nowSeconds() + 3600 };
      return [
        ['HS256 signed with the RSA public key PEM as HMAC secret', hmacToken(claims, keys.rsa.publicPem)],
        ['HS256 signed with the trimmed RSA public key PEM', hmacToken(claims, keys.rsa.publicPem.trim())],
        ['HS512 signed with the RSA public key PEM', hmacToken(claims, keys.rsa.publicPem, { alg: 'HS512' })],
        ['ES256 token (EC key) on an RSA server', sign(CLAIMS, keys.ec.privateKey, 'ES256', { expiresIn: '1h' })],
        ['RS384 with the right key (algorithm not configured)', sign(CLAIMS, keys.rsa.privateKey, 'RS384', { expiresIn: '1h' })],
      ];
    },
    wrongKey: () => sign(CLAIMS, keys.otherRsa.privateKey, 'RS256', { expiresIn: '1h' }),
  },
  ES256: {
    server: () => es,
    valid: (claims = CLAIMS, opts = {}) => sign(claims, keys.ec.privateKey, 'ES256', { expiresIn: '1h', ...opts }),
    wrongAlgorithm: () => {
      const claims = { ...CLAIMS, exp: nowSeconds() + 3600 };
      return [
        ['HS256 signed with the EC public key PEM as HMAC secret', hmacToken(claims, keys.ec.publicPem)],
        ['RS256 token (RSA key) on an EC server', sign(CLAIMS, keys.rsa.privateKey, 'RS256', { expiresIn: '1h' })],
      ];
    },
    wrongKey: () => sign(CLAIMS, keys.otherEc.privateKey, 'ES256', { expiresIn: '1h' }),
  },
};

/** Every invalid token for `suite`: [label, token, code of the auth-message error]. */
function invalidTokens(suite) {
  const valid = suite.valid();
  const now = nowSeconds();
  return [
    ['alg none', unsignedToken({ ...CLAIMS, exp: now + 3600 }), 'invalid_token'],
    ['alg None', unsignedToken({ ...CLAIMS, exp: now + 3600 }, { alg: 'None' }), 'invalid_token'],
    ['alg none with the valid signature kept', unsignedToken({ ...CLAIMS, exp: now + 3600 },
      { signature: valid.split('.')[2] }), 'invalid_token'],
    ...suite.wrongAlgorithm().map(([label, token]) => [label, token, 'invalid_token']),
    ['bad signature (one character changed)', corruptSignature(valid), 'invalid_token'],
    ['signed with another key/secret', suite.wrongKey(), 'invalid_token'],
    ['signature stripped', `${valid.split('.').slice(0, 2).join('.')}.`, 'invalid_token'],
    ['tampered payload (permissions and sub)', tamperPayload(valid, { sub: 'admin', permissions: ['*'] }), 'invalid_token'],
    ['tampered payload (exp extended)', tamperPayload(valid, { exp: now + 365 * 86400 }), 'invalid_token'],
    ...malformedTokens().map(([label, token]) => [`malformed: ${label}`, token, 'invalid_token']),
    ['expired (exp 120 s ago)', suite.valid({ ...CLAIMS, exp: now - 120 }, { expiresIn: undefined }), 'token_expired'],
    ['nbf 120 s in the future', suite.valid({ ...CLAIMS, nbf: now + 120 }), 'invalid_token'],
  ];
}

for (const [alg, suite] of Object.entries(SUITES)) {
  describe(`${alg}: a valid token works through every transport`, () => {
    it('?token= on the upgrade', T, async () => {
      const c = await connectWithToken(suite.server(), 'query', suite.valid());
      await assertServes(c);
      await c.close();
    });

    it('Authorization: Bearer on the upgrade', T, async () => {
      const c = await connectWithToken(suite.server(), 'authorization', suite.valid());
      await assertServes(c);
      await c.close();
    });

    it('Sec-WebSocket-Protocol realtime.v1, bearer.<jwt>: only realtime.v1 is echoed', T, async () => {
      const token = suite.valid();
      const c = await connectWithToken(suite.server(), 'subprotocol', token);
      assert.equal(c.ws.protocol, 'realtime.v1');
      await assertServes(c);
      await c.close();
      const res = await rawUpgrade(suite.server().port, UPGRADE_TRANSPORTS.subprotocol(token));
      assert.equal(res.status, 101);
      assert.equal(res.headers['sec-websocket-protocol'], 'realtime.v1', 'exactly realtime.v1, never the token');
      const alone = await rawUpgrade(suite.server().port, {
        headers: { Authorization: `Bearer ${token}`, 'Sec-WebSocket-Protocol': 'realtime.v1' },
      });
      assert.equal(alone.status, 101, 'realtime.v1 offered alone');
      assert.equal(alone.headers['sec-websocket-protocol'], 'realtime.v1');
      const none = await rawUpgrade(suite.server().port, UPGRADE_TRANSPORTS.authorization(token));
      assert.equal(none.status, 101);
      assert.equal(none.headers['sec-websocket-protocol'], undefined, 'no protocol offered, none echoed');
    });

    it('first message {"type":"auth","token"} after an upgrade without credentials', T, async () => {
      const c = await connectWithToken(suite.server(), 'none');
      assert.deepEqual(await auth(c, { token: suite.valid() }, 1), authAck(1));
      await assertServes(c);
      await c.close();
    });
  });

  describe(`${alg}: every invalid token is refused`, () => {
    it('on the upgrade (each transport): 401 with WWW-Authenticate and no token in the body', T, async () => {
      const srv = suite.server();
      for (const [label, token, code] of invalidTokens(suite)) {
        for (const [name, transport] of Object.entries(UPGRADE_TRANSPORTS)) {
          const res = await rawUpgrade(srv.port, transport(token));
          const body = assertUnauthorized(res, token, `${alg} ${label} via ${name}`);
          if (code === 'token_expired') assert.match(body, /expir/i, `${label}: the body names the reason`);
        }
      }
    });

    it('with the ws client too: the upgrade is refused with 401', T, async () => {
      const token = corruptSignature(suite.valid());
      for (const transport of ['query', 'authorization', 'subprotocol']) {
        await assert.rejects(connectWithToken(suite.server(), transport, token), /upgrade refused: 401/,
          `bad signature via ${transport}`);
      }
    });

    it('in the auth message: invalid_token/token_expired, the connection stays open, a retry works', T, async () => {
      const c = await connectWithToken(suite.server(), 'none');
      let id = 100;
      for (const [label, token, code] of invalidTokens(suite)) {
        id += 1;
        const reply = await auth(c, { token }, id);
        assertErrorReply(reply, code, id);
        assert.deepEqual(Object.keys(reply).sort(), ['code', 'id', 'message', 'type'], label);
        assert.ok(!reply.message.includes(token), `${label}: the message must not contain the token`);
        assert.deepEqual(await c.request({ type: 'subscribe', channel: 'room', id: id + 1000 }),
          { type: 'error', id: id + 1000, code: 'auth_required', message: AUTH_REQUIRED_MESSAGE },
          `${label}: still unauthenticated`);
      }
      assert.equal(c.closeInfo, null, 'refused auth messages do not close the connection');
      assert.deepEqual(await auth(c, { token: suite.valid() }, 999), authAck(999));
      await assertServes(c);
      await c.close();
    });
  });
}

describe('algorithms come from the configuration (jwtAlgorithms ["HS384","HS512"])', () => {
  it('HS384 and HS512 are accepted, HS256 with the same secret is refused', T, async () => {
    for (const alg of ['HS384', 'HS512']) {
      const c = await connectWithToken(hsAlgs, 'query', sign(CLAIMS, SECRET, alg, { expiresIn: '1h' }));
      await assertServes(c);
      await c.close();
    }
    const hs256 = sign(CLAIMS, SECRET, 'HS256', { expiresIn: '1h' });
    assertUnauthorized(await rawUpgrade(hsAlgs.port, UPGRADE_TRANSPORTS.query(hs256)), hs256, 'HS256 not configured');
  });
});

describe('claims', () => {
  it('the user id comes from sub, else from id (string or integer); permissions from the claim', T, async () => {
    const c = await connectWithToken(hs, 'none');
    const mk = (claims) => sign(claims, SECRET, 'HS256', { expiresIn: '1h' });
    assert.deepEqual(await auth(c, { token: mk({ id: 'user-123', permissions: ['read:*', 'write:*'] }) }, 1),
      authAck(1, 'user-123', ['read:*', 'write:*']));
    assert.deepEqual(await auth(c, { token: mk({ id: 42, permissions: ['read:a'] }) }, 2),
      authAck(2, '42', ['read:a']));
    assert.deepEqual(await auth(c, { token: mk({ sub: 'from-sub', id: 'from-id', permissions: [] }) }, 3),
      authAck(3, 'from-sub', []));
    await c.close();
  });
});

describe('leeway (default 30 s; jwtLeeway 0 on the strict server)', () => {
  it('a token expired 10 s ago is accepted with the default leeway', T, async () => {
    const token = sign({ ...CLAIMS, exp: nowSeconds() - 10 }, SECRET, 'HS256');
    const c = await connectWithToken(hs, 'query', token);
    await assertServes(c);
    await c.close();
    const d = await connectWithToken(hs, 'none');
    assert.deepEqual(await auth(d, { token: sign({ ...CLAIMS, exp: nowSeconds() - 10 }, SECRET, 'HS256') }, 1), authAck(1));
    await d.close();
  });

  it('the same token is refused with jwtLeeway 0 (401; token_expired in the auth message)', T, async () => {
    const token = sign({ ...CLAIMS, exp: nowSeconds() - 10 }, SECRET, 'HS256');
    for (const [name, transport] of Object.entries(UPGRADE_TRANSPORTS)) {
      assertUnauthorized(await rawUpgrade(strict.port, transport(token)), token, `expired 10 s via ${name}`);
    }
    const c = await connectWithToken(strict, 'none');
    assertErrorReply(await auth(c, { token }, 1), 'token_expired', 1);
    await c.close();
  });

  it('nbf 10 s in the future: accepted with the default leeway, refused with jwtLeeway 0', T, async () => {
    const token = sign({ ...CLAIMS, nbf: nowSeconds() + 10 }, SECRET, 'HS256', { expiresIn: '1h' });
    const c = await connectWithToken(hs, 'query', token);
    await assertServes(c);
    await c.close();
    assertUnauthorized(await rawUpgrade(strict.port, UPGRADE_TRANSPORTS.query(token)), token, 'nbf +10 s, leeway 0');
  });
});

describe('requireAuth: nothing but auth before authenticating', () => {
  it('subscribe, publish, unsubscribe and unknown types get auth_required with the id', T, async () => {
    const sub = await connectWithToken(hs, 'query', SUITES.HS256.valid());
    assert.deepEqual(await sub.request({ type: 'subscribe', channel: 'guarded', id: 1 }), { type: 'ack', id: 1 });
    const c = await connectWithToken(hs, 'none');
    const commands = [
      { type: 'subscribe', channel: 'guarded', id: 11 },
      { type: 'publish', channel: 'guarded', data: 'sneaky', id: 12 },
      { type: 'unsubscribe', channel: 'guarded', id: 13 },
      { type: 'dance', id: 14 },
      { type: 'publish', channel: 'guarded', data: { a: 1 }, id: 15 },
    ];
    for (const cmd of commands) {
      assert.deepEqual(await c.request(cmd),
        { type: 'error', id: cmd.id, code: 'auth_required', message: AUTH_REQUIRED_MESSAGE }, JSON.stringify(cmd));
    }
    await sub.expectNothing(300);
    assert.equal(c.closeInfo, null);
    assert.deepEqual(await auth(c, { token: SUITES.HS256.valid() }, 16), authAck(16));
    assert.deepEqual(await c.request({ type: 'publish', channel: 'guarded', data: 'ok', id: 17 }),
      { type: 'ack', id: 17, delivered: 1 });
    assert.deepEqual(await sub.next(), { type: 'message', channel: 'guarded', data: 'ok' });
    await Promise.all([sub.close(), c.close()]);
  });

  it(`closes with 4001 "Authentication timeout" after authTimeout (${AUTH_TIMEOUT_MS} ms)`, T, async () => {
    const t0 = Date.now();
    const c = await connectWithToken(strict, 'none');
    const close = await withTimeout(c.closed, AUTH_TIMEOUT_MS + 3000, 'auth timeout close');
    const elapsed = Date.now() - t0;
    assert.deepEqual(close, { code: 4001, reason: 'Authentication timeout' });
    assert.ok(elapsed >= AUTH_TIMEOUT_MS - 50, `closed after ${elapsed} ms, before authTimeout`);
  });

  it('refused auth attempts do not extend the time', T, async () => {
    const t0 = Date.now();
    const c = await connectWithToken(strict, 'none');
    const bad = corruptSignature(sign(CLAIMS, SECRET, 'HS256', { expiresIn: '1h' }));
    let id = 1;
    while (!c.closeInfo && Date.now() - t0 < AUTH_TIMEOUT_MS + 3000) {
      c.send({ type: 'auth', token: bad, id: id++ });
      await sleep(100);
    }
    assert.deepEqual(c.closeInfo, { code: 4001, reason: 'Authentication timeout' });
    const elapsed = Date.now() - t0;
    assert.ok(elapsed < AUTH_TIMEOUT_MS + 2000, `closed only after ${elapsed} ms`);
    for (const item of c.queue) assert.equal(item.json.code, 'invalid_token', item.raw);
  });

  it('a client that authenticates in time, or on the upgrade, is not closed', T, async () => {
    const a = await connectWithToken(strict, 'none');
    assert.deepEqual(await auth(a, { token: sign(CLAIMS, SECRET, 'HS256', { expiresIn: '1h' }) }, 1), authAck(1));
    const b = await connectWithToken(strict, 'authorization', sign(CLAIMS, SECRET, 'HS256', { expiresIn: '1h' }));
    await sleep(AUTH_TIMEOUT_MS * 2 + 200);
    assert.equal(a.closeInfo, null);
    assert.equal(b.closeInfo, null);
    await assertServes(a, 'in-time-a');
    await assertServes(b, 'in-time-b');
    await Promise.all([a.close(), b.close()]);
  });
});

describe('token expiry while connected (jwtLeeway 0, tokenExpiryGrace 2000 ms)', () => {
  /** Connects to `strict` with a token whose exp is 2-3 s away (1 s of slack to connect); returns {c, exp}. */
  async function shortLived(transport = 'query') {
    const exp = nowSeconds() + 3;
    const c = await connectWithToken(strict, transport, sign({ ...CLAIMS, exp }, SECRET, 'HS256'));
    return { c, exp };
  }

  /** Waits for the token_expired push and checks it is exact and not early; returns its time. */
  async function expectExpiredPush(c, exp) {
    const msg = await c.next(6000);
    const at = Date.now();
    assert.deepEqual(msg, { type: 'token_expired', graceMs: GRACE_MS });
    assert.ok(at >= exp * 1000 - 50, `pushed ${exp * 1000 - at} ms before exp`);
    return at;
  }

  it('pushes token_expired at exp, then closes with 3005 "Token expired" after the grace', T, async () => {
    const { c, exp } = await shortLived();
    await assertServes(c);
    const pushedAt = await expectExpiredPush(c, exp);
    const close = await withTimeout(c.closed, GRACE_MS + 3000, 'close after the grace');
    const waited = Date.now() - pushedAt;
    assert.deepEqual(close, { code: 3005, reason: 'Token expired' });
    assert.ok(waited >= GRACE_MS - 100, `closed ${waited} ms after the push, before the grace ran out`);
  });

  it('a fresh auth within the grace keeps the connection', T, async () => {
    const { c, exp } = await shortLived('authorization');
    await expectExpiredPush(c, exp);
    assert.deepEqual(await auth(c, { token: sign(CLAIMS, SECRET, 'HS256', { expiresIn: '1h' }) }, 5), authAck(5));
    await c.expectNothing(GRACE_MS + 700);
    assert.equal(c.closeInfo, null, 'still open after the grace');
    await assertServes(c, 'refreshed');
    await c.close();
  });

  it('an invalid auth within the grace does not save it', T, async () => {
    const { c, exp } = await shortLived();
    await expectExpiredPush(c, exp);
    const bad = corruptSignature(sign(CLAIMS, SECRET, 'HS256', { expiresIn: '1h' }));
    assertErrorReply(await auth(c, { token: bad }, 6), 'invalid_token', 6);
    const close = await withTimeout(c.closed, GRACE_MS + 3000, 'close after the grace');
    assert.deepEqual(close, { code: 3005, reason: 'Token expired' });
  });
});

describe('API keys (apiKeys in the config file)', () => {
  const forbidden = (id, ch) => ({
    type: 'error', id, code: 'forbidden', message: `Permission denied: subscribe to "${ch}" requires read:${ch}`,
  });

  /** The key's permissions: read/write metrics, nothing else. */
  async function assertKeyIdentity(c) {
    assert.deepEqual(await c.request({ type: 'subscribe', channel: 'metrics', id: 1 }), { type: 'ack', id: 1 });
    assert.deepEqual(await c.request({ type: 'subscribe', channel: 'other', id: 2 }), forbidden(2, 'other'));
    c.send({ type: 'publish', channel: 'metrics', data: 7, id: 3 });
    const got = (await c.nextN(2)).sort((a, b) => a.type.localeCompare(b.type));
    assert.deepEqual(got, [{ type: 'ack', id: 3, delivered: 1 }, { type: 'message', channel: 'metrics', data: 7 }]);
  }

  it('X-API-Key header', T, async () => {
    const c = await connect(hs.url, { headers: { 'X-API-Key': API_KEY } });
    await assertKeyIdentity(c);
    await c.close();
  });

  it('?api_key= on the upgrade', T, async () => {
    const c = await connect(`${hs.url}?api_key=${encodeURIComponent(API_KEY)}`);
    await assertKeyIdentity(c);
    await c.close();
  });

  it('{"type":"auth","apiKey"} acks with userId apikey:<name> and the key permissions', T, async () => {
    const c = await connectWithToken(hs, 'none');
    assertErrorReply(await auth(c, { apiKey: 'not-a-key' }, 1), 'invalid_token', 1);
    assert.deepEqual(await auth(c, { apiKey: API_KEY }, 2), authAck(2, 'apikey:metrics-bot', API_KEY_PERMS));
    await assertKeyIdentity(c);
    await c.close();
  });

  it('an unknown key gets 401 (header and query), a near miss too', T, async () => {
    for (const key of ['unknown-key', `${API_KEY}x`, API_KEY.slice(0, -1), API_KEY.toUpperCase()]) {
      assertUnauthorized(await rawUpgrade(hs.port, { headers: { 'X-API-Key': key } }), key, `X-API-Key ${key}`);
      assertUnauthorized(await rawUpgrade(hs.port, { path: `/ws?api_key=${encodeURIComponent(key)}` }), key,
        `?api_key=${key}`);
    }
  });
});

describe('start-up', () => {
  const listen = ['--host', '127.0.0.1', '--port', '0'];

  /** Writes a config object to a file in the temp dir. */
  function configFile(name, obj) {
    const p = path.join(dir, name);
    writeFileSync(p, JSON.stringify(obj));
    return p;
  }

  it('refuses requireAuth without jwtSecret, jwtPublicKeyFile or apiKeys: exit 2 naming jwtSecret', T, async () => {
    const f = configFile('noauth.json', { requireAuth: true });
    const runs = [
      ['config file', [...listen, '--config', f], {}],
      ['--check-config', ['--check-config', '--config', f], {}],
      ['REALTIME_REQUIRE_AUTH', listen, { REALTIME_REQUIRE_AUTH: 'true' }],
    ];
    for (const [what, args, env] of runs) {
      const r = await runDaemon(args, { env });
      assert.equal(r.code, 2, `${what}: exit code (stderr: ${r.stderr})`);
      assert.equal(r.signal, null);
      assert.match(r.stderr, /jwtSecret/, `${what}: stderr names jwtSecret`);
      assert.ok(!/listening on/.test(r.stdout), `${what}: must not listen`);
    }
  });

  it('requireAuth with only apiKeys (or only a public key) starts', T, async () => {
    for (const config of [
      { requireAuth: true, apiKeys: [{ key: 'k-1', name: 'one', permissions: ['read:*'] }] },
      { requireAuth: true, jwtPublicKeyFile: keys.ec.file },
    ]) {
      const srv = await startServer({ config });
      await srv.stop();
    }
  });

  it('an unreadable or unparsable public key file stops the start with a message', T, async () => {
    const notPem = path.join(dir, 'not-a-key.pem');
    writeFileSync(notPem, 'this is not a PEM key\n');
    for (const file of [path.join(dir, 'missing.pem'), notPem]) {
      const r = await runDaemon([...listen, '--config', configFile('badkey.json',
        { requireAuth: true, jwtPublicKeyFile: file })]);
      assert.notEqual(r.code, 0, `${file}: exit code`);
      assert.equal(r.signal, null);
      assert.ok(r.stderr.includes(file) || r.stderr.includes('jwtPublicKeyFile'),
        `stderr names the file or the key: ${r.stderr}`);
      assert.ok(!/listening on/.test(r.stdout));
    }
  });
});

describe('no credential in the logs', () => {
  it('tokens, the secret and API keys never reach stderr at --log-level debug', T, async () => {
    const srv = await startServer({
      args: ['--log-level', 'debug'],
      config: { requireAuth: true, jwtSecret: SECRET, apiKeys: [{ key: API_KEY, name: 'bot', permissions: ['read:*'] }] },
    });
    const secrets = [SECRET, API_KEY, 'wrong-api-key-456'];
    try {
      const valid = sign(CLAIMS, SECRET, 'HS256', { expiresIn: '1h' });
      const bad = corruptSignature(sign(CLAIMS, SECRET, 'HS256', { expiresIn: '1h' }));
      const expired = sign({ ...CLAIMS, exp: nowSeconds() - 3600 }, SECRET, 'HS256');
      secrets.push(valid, bad, expired);
      for (const transport of ['query', 'authorization', 'subprotocol']) {
        const c = await connectWithToken(srv, transport, valid);
        await assertServes(c);
        await c.close();
        for (const token of [bad, expired]) {
          const res = await rawUpgrade(srv.port, UPGRADE_TRANSPORTS[transport](token));
          assert.equal(res.status, 401);
        }
      }
      const c = await connectWithToken(srv, 'none');
      assertErrorReply(await auth(c, { token: bad }, 1), 'invalid_token', 1);
      assertErrorReply(await auth(c, { token: expired }, 2), 'token_expired', 2);
      assertErrorReply(await auth(c, { apiKey: 'wrong-api-key-456' }, 3), 'invalid_token', 3);
      assert.equal((await auth(c, { token: valid }, 4)).type, 'ack');
      assert.equal((await auth(c, { apiKey: API_KEY }, 5)).type, 'ack');
      await c.close();
      const k = await connect(srv.url, { headers: { 'X-API-Key': API_KEY } });
      await k.close();
      assert.equal((await rawUpgrade(srv.port, { path: `/ws?api_key=${API_KEY}` })).status, 101);
      assert.equal((await rawUpgrade(srv.port, { headers: { 'X-API-Key': 'wrong-api-key-456' } })).status, 401);
    } finally {
      await srv.stop();
    }
    const log = srv.stderr();
    assert.ok(log.trim().length > 0, 'the debug log is not empty');
    for (const s of secrets) {
      assert.ok(!log.includes(s), `stderr contains a credential (${s.slice(0, 12)}...):\n${log}`);
      const parts = s.split('.');
      if (parts.length === 3) {
        for (const part of parts.slice(1)) {
          if (part.length >= 16) assert.ok(!log.includes(part), `stderr contains a token segment:\n${log}`);
        }
      }
    }
  });
});
