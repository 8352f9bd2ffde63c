// Helpers for the security tests (issue #3): key pairs written to PEM files,
// JWTs minted with npm jsonwebtoken (the seed's own dependency) and the
// invalid tokens it refuses to mint (alg none, HS256 keyed with a public key
// PEM) built by hand, upgrade requests carrying credentials in each of the
// places the server reads them, and ws clients that offer subprotocols.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHmac, generateKeyPairSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import jwt from 'jsonwebtoken';
import WebSocket from 'ws';
import { Client, daemonEnv, realtimedPath, startServer, untrack, withTimeout } from './server.mjs';
import { httpRequest, upgradeRequest } from './raw.mjs';

/** The exact message of an auth_required error (seed README, Troubleshooting, issue 1). */
export const AUTH_REQUIRED_MESSAGE = 'Authentication required for WebSocket connection';

/** The exact message of a rate_limited error (seed README, Troubleshooting, issue 2). */
export const RATE_LIMITED_MESSAGE = 'Rate limit exceeded: Too many messages sent';

/** The WWW-Authenticate value of every 401 on the upgrade. */
export const WWW_AUTHENTICATE = 'Bearer error="invalid_token"';

/** Current time in whole seconds since the epoch, as JWT claims count it. */
export function nowSeconds() {
  return Math.floor(Date.now() / 1000);
}

/** base64url of a Buffer, a string (UTF-8) or an object (as JSON). */
export function b64url(value) {
  let buf;
  if (Buffer.isBuffer(value)) buf = value;
  else if (typeof value === 'string') buf = Buffer.from(value, 'utf8');
  else buf = Buffer.from(JSON.stringify(value), 'utf8');
  return buf.toString('base64url');
}

/**
 * Generates an RSA 2048 and an EC P-256 key pair (plus a second RSA pair, to
 * sign with a key the server does not know) and writes each public key as an
 * SPKI PEM file in `dir`. Returns {rsa, ec, otherRsa, otherEc}, each
 * {privateKey (KeyObject), publicPem (string), file (path)}.
 */
export function makeKeyPairs(dir) {
  const pair = (name, type, opts) => {
    const { privateKey, publicKey } = generateKeyPairSync(type, opts);
    const publicPem = publicKey.export({ type: 'spki', format: 'pem' });
    const file = path.join(dir, `${name}.pub.pem`);
    writeFileSync(file, publicPem);
    return { privateKey, publicKey, publicPem, file };
  };
  return {
    rsa: pair('rsa', 'rsa', { modulusLength: 2048 }),
    ec: pair('ec', 'ec', { namedCurve: 'P-256' }),
    otherRsa: pair('other-rsa', 'rsa', { modulusLength: 2048 }),
    otherEc: pair('other-ec', 'ec', { namedCurve: 'P-256' }),
  };
}

/**
 * Signs `payload` with jsonwebtoken (`key` a secret string or a private
 * KeyObject). Options set to undefined are dropped (jsonwebtoken refuses
 * them), so a caller can cancel a default such as expiresIn.
 */
export function sign(payload, key, algorithm, options = {}) {
  const opts = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined));
  return jwt.sign(payload, key, { algorithm, ...opts });
}

/** Decodes the header and payload of a compact JWT without verifying it. */
export function decodeParts(token) {
  const [h, p] = token.split('.');
  return {
    header: JSON.parse(Buffer.from(h, 'base64url').toString('utf8')),
    payload: JSON.parse(Buffer.from(p, 'base64url').toString('utf8')),
  };
}

/**
 * An HMAC-SHA256 JWT built by hand with `secret` (any string or Buffer, e.g.
 * an RSA public key PEM: the classic algorithm-confusion attack that
 * jsonwebtoken refuses to mint). `alg` goes into the header as given.
 */
export function hmacToken(payload, secret, { alg = 'HS256', header = {} } = {}) {
  const hash = { HS256: 'sha256', HS384: 'sha384', HS512: 'sha512' }[alg] ?? 'sha256';
  const input = `${b64url({ alg, typ: 'JWT', ...header })}.${b64url(payload)}`;
  return `${input}.${createHmac(hash, secret).update(input).digest('base64url')}`;
}

/** An unsigned JWT (`alg` "none" unless given), signature segment empty or `signature`. */
export function unsignedToken(payload, { alg = 'none', signature = '' } = {}) {
  return `${b64url({ alg, typ: 'JWT' })}.${b64url(payload)}.${signature}`;
}

/**
 * `token` with its payload replaced by `changes` merged into the original
 * claims; header and signature are kept, so the signature no longer matches.
 */
export function tamperPayload(token, changes) {
  const [h, , s] = token.split('.');
  const { payload } = decodeParts(token);
  return `${h}.${b64url({ ...payload, ...changes })}.${s}`;
}

/**
 * `token` with one character in the middle of its signature changed. A middle
 * base64url character carries six full bits, so the decoded signature differs
 * (changing the last character might only touch padding bits).
 */
export function corruptSignature(token) {
  const [h, p, s] = token.split('.');
  const i = Math.floor(s.length / 2);
  const c = s[i] === 'A' ? 'B' : 'A';
  return `${h}.${p}.${s.slice(0, i)}${c}${s.slice(i + 1)}`;
}

/**
 * Malformed tokens made only of HTTP token characters, so that every
 * transport (query, Authorization, Sec-WebSocket-Protocol) can carry them
 * without the request itself being malformed.
 */
export function malformedTokens() {
  const obj = b64url({ sub: 'user-123', permissions: ['read:*'] });
  return [
    ['one segment', 'notajwt'],
    ['two segments', `${b64url({ alg: 'HS256', typ: 'JWT' })}.${obj}`],
    ['four segments', `${b64url({ alg: 'HS256', typ: 'JWT' })}.${obj}.c2ln.c2ln`],
    ['header not JSON', `${b64url('not json')}.${obj}.c2lnbmF0dXJl`],
    ['payload not JSON', `${b64url({ alg: 'HS256', typ: 'JWT' })}.${b64url('not json')}.c2lnbmF0dXJl`],
    ['payload not an object', `${b64url({ alg: 'HS256', typ: 'JWT' })}.${b64url([1, 2])}.c2lnbmF0dXJl`],
    ['header without alg', `${b64url({ typ: 'JWT' })}.${obj}.c2lnbmF0dXJl`],
    ['empty segments', '..'],
  ];
}

/** The credential transports on the upgrade request, each a function token -> {path, headers}. */
export const UPGRADE_TRANSPORTS = Object.freeze({
  query: (token, base = '/ws') => ({ path: `${base}?token=${encodeURIComponent(token)}`, headers: {} }),
  authorization: (token, base = '/ws') => ({ path: base, headers: { Authorization: `Bearer ${token}` } }),
  subprotocol: (token, base = '/ws') => ({
    path: base, headers: { 'Sec-WebSocket-Protocol': `realtime.v1, bearer.${token}` },
  }),
});

/**
 * Sends a hand-written upgrade request (see upgradeRequest) and returns the
 * response {status, headers, body, socket}. A 101's socket is destroyed
 * unless keepOpen.
 */
export async function rawUpgrade(port, { path: p = '/ws', headers = {}, keepOpen = false } = {}) {
  const res = await httpRequest(port, upgradeRequest({ path: p, headers }), { keepOpen: true });
  if (!keepOpen || res.status !== 101) res.socket.destroy();
  return res;
}

/**
 * Asserts that an upgrade response is the 401 of the wire contract:
 * `WWW-Authenticate: Bearer error="invalid_token"`, a non-empty body that does
 * not contain `secret` (the token or key), and no WebSocket. `what` labels
 * failures.
 */
export function assertUnauthorized(res, secret, what) {
  assert.equal(res.status, 401, `${what}: status ${res.status} (expected 401)`);
  assert.equal(res.headers['www-authenticate'], WWW_AUTHENTICATE, `${what}: WWW-Authenticate`);
  assert.equal(res.headers['sec-websocket-accept'], undefined, `${what}: no Sec-WebSocket-Accept`);
  const body = res.body.toString('utf8');
  assert.ok(body.trim().length > 0, `${what}: a body naming the reason`);
  if (secret) {
    assert.ok(!body.includes(secret), `${what}: the body must not contain the credential: ${body}`);
    const sig = String(secret).split('.')[2];
    if (sig && sig.length >= 8) assert.ok(!body.includes(sig), `${what}: the body must not contain the signature`);
  }
  return body;
}

/**
 * Opens a ws Client offering `protocols` (array) with `options` (headers...).
 * Like Client.open, rejects on a refused upgrade or after `timeout` ms.
 */
export async function openWithProtocols(url, protocols, { timeout = 5000, ...options } = {}) {
  const ws = new WebSocket(url, protocols, { handshakeTimeout: timeout, ...options });
  const client = new Client(ws);
  await withTimeout(new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
  }), timeout, `connect ${url}`).catch((err) => {
    ws.terminate();
    untrack(client);
    throw err;
  });
  return client;
}

/**
 * Opens a ws Client with `token` carried by `transport` ("query",
 * "authorization", "subprotocol"; "none" sends no credentials).
 */
export function connectWithToken(srv, transport, token, options = {}) {
  switch (transport) {
    case 'query':
      return Client.open(`${srv.url}?token=${encodeURIComponent(token)}`, options);
    case 'authorization':
      return Client.open(srv.url, { ...options, headers: { Authorization: `Bearer ${token}` } });
    case 'subprotocol':
      return openWithProtocols(srv.url, ['realtime.v1', `bearer.${token}`], options);
    case 'none':
      return Client.open(srv.url, options);
    default:
      throw new Error(`unknown transport ${transport}`);
  }
}

/** Asserts the exact error reply shape {type, id, code, message} and returns it. */
export function assertErrorReply(msg, code, id, message) {
  assert.equal(msg?.type, 'error', JSON.stringify(msg));
  assert.equal(msg.code, code, JSON.stringify(msg));
  assert.equal(msg.id, id, JSON.stringify(msg));
  assert.equal(typeof msg.message, 'string', JSON.stringify(msg));
  assert.ok(msg.message.length > 0, 'non-empty message');
  if (message !== undefined) assert.equal(msg.message, message);
  return msg;
}

/**
 * Runs realtimed with `args` to completion (`timeout` ms, then SIGKILL and
 * failure). Resolves {code, signal, stdout, stderr}.
 */
export function runDaemon(args, { env = {}, timeout = 5000 } = {}) {
  return new Promise((resolve, reject) => {
    const proc = spawn(realtimedPath(), args, { env: daemonEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (d) => { stdout += d; });
    proc.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`realtimed ${args.join(' ')} still running after ${timeout} ms\n` +
        `stdout:\n${stdout}\nstderr:\n${stderr}`));
    }, timeout);
    proc.on('error', (err) => { clearTimeout(timer); reject(err); });
    proc.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/**
 * Starts one server per options object (see startServer) in parallel. If any
 * fails, the ones that started are stopped (SIGKILL after a bounded wait) so
 * that no daemon outlives the test file, and the first failure is thrown.
 */
export async function startServers(optionsList) {
  const results = await Promise.allSettled(optionsList.map((o) => startServer(o)));
  const failed = results.find((r) => r.status === 'rejected');
  if (!failed) return results.map((r) => r.value);
  await Promise.allSettled(results.filter((r) => r.status === 'fulfilled').map((r) => r.value.stop()));
  throw failed.reason;
}

/**
 * Reads messages from `client` until the server closes the connection
 * (bounded by `timeout`). Returns {messages, close}.
 */
export async function drainUntilClose(client, timeout = 5000) {
  await withTimeout(client.closed, timeout, 'server to close the connection');
  const messages = client.queue.splice(0).map((i) => i.json);
  return { messages, close: client.closeInfo };
}
