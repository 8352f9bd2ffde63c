// Starts and stops realtimed for the integration tests, and wraps the npm `ws`
// client with a message queue so that no message is missed between awaits.
//
// Each test file starts its own server(s) on an ephemeral port (`--port 0`) and
// learns the port from the daemon's `listening on 127.0.0.1:<port>` line, so
// files can run in parallel without port races. stop() is itself a check: the
// daemon must exit 0 on SIGTERM within a bounded time and its stderr must hold
// no sanitizer report.

import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';

export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));

export const SANITIZER_PATTERNS = [
  'ERROR: AddressSanitizer',
  'runtime error:',
  'LeakSanitizer',
  'ERROR: UndefinedBehaviorSanitizer',
  'WARNING: ThreadSanitizer',
];

const LISTEN_RE = /listening on 127\.0\.0\.1:(\d+)/;

// Every client the helpers create, so cleanup() can destroy what a failed test
// left open (an open socket would keep the test process alive).
const liveClients = new Set();

/** Path of the daemon under test: $REALTIMED (relative to cwd) or build/release/realtimed. */
export function realtimedPath() {
  if (process.env.REALTIMED) return path.resolve(process.env.REALTIMED);
  return path.join(REPO_ROOT, 'build', 'release', 'realtimed');
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Races `promise` against a timer; rejects with `what` in the message when the
 * timer wins. The timer is always cleared.
 */
export function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timeout after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Returns the sanitizer report lines found in `text` (empty when clean). */
export function sanitizerReports(text) {
  return text.split('\n').filter((line) => SANITIZER_PATTERNS.some((p) => line.includes(p)));
}

/**
 * The daemon's environment: ours without any REALTIME_* variable (they would
 * override the test's configuration), plus `env`. RT_TEST_IO_URING (set by
 * ctest for the integration-writev/ runs) picks the write path to test.
 */
export function daemonEnv(env = {}) {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('REALTIME_')));
  if (process.env.RT_TEST_IO_URING !== undefined) base.REALTIME_IO_URING = process.env.RT_TEST_IO_URING;
  return { ...base, ...env };
}

/**
 * Spawns realtimed on 127.0.0.1 with an ephemeral port (`listenArgs`, which a
 * test of flag/env/file precedence may replace). `config` (an object) is
 * written to a temporary JSON file passed as --config; `args` are appended
 * after the defaults; `env` is merged over process.env. Resolves once the
 * daemon printed its listening line (10 s at most), otherwise kills it and
 * rejects with the captured stderr.
 */
export async function startServer({
  args = [], env = {}, config, startTimeout = 10000, listenArgs = ['--host', '127.0.0.1', '--port', '0'],
} = {}) {
  const bin = realtimedPath();
  if (!existsSync(bin)) {
    throw new Error(`realtimed not found at ${bin} (build it with \`make build\` or set REALTIMED)`);
  }
  let tmpDir = null;
  const argv = [...listenArgs];
  if (config !== undefined) {
    tmpDir = mkdtempSync(path.join(tmpdir(), 'rt-itest-'));
    const file = path.join(tmpDir, 'config.json');
    writeFileSync(file, JSON.stringify(config));
    argv.push('--config', file);
  }
  argv.push(...args);

  const proc = spawn(bin, argv, {
    env: daemonEnv(env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  proc.stdout.setEncoding('utf8');
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (d) => { stderr += d; });

  const exited = new Promise((resolve) => {
    proc.on('exit', (code, signal) => resolve({ code, signal }));
  });
  const spawnError = new Promise((_, reject) => proc.on('error', reject));

  const port = await withTimeout(
    Promise.race([
      new Promise((resolve) => {
        proc.stdout.on('data', (d) => {
          stdout += d;
          const m = LISTEN_RE.exec(stdout);
          if (m) resolve(Number(m[1]));
        });
      }),
      exited.then(({ code, signal }) => {
        throw new Error(`realtimed exited before listening (code ${code}, signal ${signal})\n` +
          `argv: ${argv.join(' ')}\nstderr:\n${stderr}`);
      }),
      spawnError,
    ]),
    startTimeout,
    'realtimed listening line',
  ).catch((err) => {
    proc.kill('SIGKILL');
    if (tmpDir) rmSync(tmpDir, { recursive: true, force: true });
    err.message += `\nstdout:\n${stdout}\nstderr:\n${stderr}`;
    throw err;
  });

  let exitInfo = null;
  exited.then((info) => { exitInfo = info; });

  /**
   * Sends `signal` (SIGTERM by default) and waits for the exit (`timeout` ms,
   * then SIGKILL and failure). Asserts exit code 0 and no sanitizer report.
   * Returns {code, signal, elapsedMs}. Later calls return the first call's result.
   */
  let stopping = null;
  function stop(opts) {
    if (!stopping) stopping = doStop(opts);
    return stopping;
  }

  async function doStop({ signal = 'SIGTERM', timeout = 10000 } = {}) {
    const t0 = Date.now();
    if (!exitInfo) proc.kill(signal);
    let info;
    try {
      info = await withTimeout(exited, timeout, `realtimed exit after ${signal}`);
    } catch (err) {
      proc.kill('SIGKILL');
      await exited;
      throw new Error(`${err.message}; killed it. stderr:\n${stderr}`);
    } finally {
      if (tmpDir) rmSync(tmpDir, { recursive: true, force: true });
    }
    const elapsedMs = Date.now() - t0;
    const reports = sanitizerReports(stderr);
    if (reports.length > 0) {
      throw new Error(`sanitizer report in realtimed stderr:\n${stderr}`);
    }
    if (info.code !== 0) {
      throw new Error(`realtimed exited with code ${info.code}, signal ${info.signal} ` +
        `(expected 0)\nstderr:\n${stderr}`);
    }
    return { ...info, elapsedMs };
  }

  return {
    port,
    url: `ws://127.0.0.1:${port}/ws`,
    proc,
    stdout: () => stdout,
    stderr: () => stderr,
    exited,
    stop,
  };
}

/**
 * A `ws` client whose text messages are queued as {raw, json} so a test can
 * await them one at a time without losing any. Binary messages are recorded
 * and make next() fail: the server never sends them.
 */
/**
 * Something tests wait on: subclasses call wake() whenever their state
 * changes (a message, a close), and waitUntil() re-checks its condition then.
 */
export class Waitable {
  constructor() {
    this.waiters = [];
  }

  wake() {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  /** Waits until cond() is true (re-checked on every wake), or times out. */
  async waitUntil(cond, timeout, what) {
    const t0 = Date.now();
    while (!cond()) {
      const left = timeout - (Date.now() - t0);
      if (left <= 0) throw new Error(`timeout after ${timeout} ms: ${what}`);
      let timer;
      await new Promise((resolve) => {
        this.waiters.push(resolve);
        timer = setTimeout(resolve, left);
      });
      clearTimeout(timer);
    }
  }
}

export class Client extends Waitable {
  constructor(ws) {
    super();
    this.ws = ws;
    this.queue = [];
    this.pings = [];
    this.pongs = [];
    this.closeInfo = null;
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        this.closeInfo = { code, reason: reason.toString('utf8') };
        liveClients.delete(this);
        resolve(this.closeInfo);
        this.wake();
      });
    });
    ws.on('message', (data, isBinary) => {
      const raw = Buffer.isBuffer(data) ? data : Buffer.concat(data);
      const item = { raw: raw.toString('utf8'), bytes: raw, isBinary, json: undefined };
      if (!isBinary) {
        try { item.json = JSON.parse(item.raw); } catch { item.json = undefined; }
      }
      this.queue.push(item);
      this.wake();
    });
    ws.on('ping', (d) => { this.pings.push(Buffer.from(d)); this.wake(); });
    ws.on('pong', (d) => { this.pongs.push(Buffer.from(d)); this.wake(); });
    ws.on('error', (err) => { this.error = err; });
    liveClients.add(this);
  }

  /** Opens a client to `url`; rejects after `timeout` ms or on a refused upgrade. */
  static async open(url, { timeout = 5000, ...options } = {}) {
    const ws = new WebSocket(url, { handshakeTimeout: timeout, ...options });
    const client = new Client(ws);
    await withTimeout(new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
    }), timeout, `connect ${url}`).catch((err) => {
      ws.terminate();
      liveClients.delete(client);
      throw err;
    });
    return client;
  }


  /** Sends an object as JSON text. */
  send(obj) { this.ws.send(JSON.stringify(obj)); }

  /** Sends `text` as one text message, exactly as given. */
  sendRaw(text) { this.ws.send(text, { binary: false }); }

  /** Removes and returns the next queued message ({raw, json, bytes}); fails on binary. */
  async nextItem(timeout = 3000) {
    await this.waitUntil(() => this.queue.length > 0 || this.closeInfo, timeout, 'next message');
    if (this.queue.length === 0) {
      throw new Error(`connection closed (code ${this.closeInfo.code} "${this.closeInfo.reason}") ` +
        'while waiting for a message');
    }
    const item = this.queue.shift();
    if (item.isBinary) throw new Error('server sent a binary message');
    if (item.json === undefined) throw new Error(`server sent non-JSON text: ${item.raw}`);
    return item;
  }

  /** Next message, parsed. */
  async next(timeout = 3000) { return (await this.nextItem(timeout)).json; }

  /** The next `n` messages, parsed, in arrival order. */
  async nextN(n, timeout = 5000) {
    const out = [];
    const t0 = Date.now();
    for (let i = 0; i < n; i++) out.push(await this.next(Math.max(1, timeout - (Date.now() - t0))));
    return out;
  }

  /** Sends `obj` and returns the next message (for a connection with no subscription traffic). */
  async request(obj, timeout = 3000) {
    this.send(obj);
    return this.next(timeout);
  }

  /** Asserts that no message arrives within `ms`. */
  async expectNothing(ms = 300) {
    await sleep(ms);
    if (this.queue.length > 0) {
      throw new Error(`expected no message, got: ${this.queue.map((i) => i.raw).join(' | ')}`);
    }
  }

  /** Sends a close frame and waits for the server's close; returns {code, reason}. */
  async close(code = 1000, reason = '', timeout = 3000) {
    if (!this.closeInfo) this.ws.close(code, reason);
    return withTimeout(this.closed, timeout, 'close handshake');
  }

  terminate() {
    this.ws.terminate();
    liveClients.delete(this);
  }
}

/** Opens a `ws` client (see Client.open). */
export function connect(url, options) {
  return Client.open(url, options);
}

/** Registers any object with a destroy()/terminate() method for cleanup(). */
export function track(obj) {
  liveClients.add(obj);
  return obj;
}

export function untrack(obj) {
  liveClients.delete(obj);
}

/** Destroys every client still open (call in after() hooks). */
export function cleanup() {
  for (const c of liveClients) {
    if (typeof c.terminate === 'function') c.terminate();
    else if (typeof c.destroy === 'function') c.destroy();
  }
  liveClients.clear();
}

/**
 * Returns the exact source text of the top-level member `key` of the JSON
 * object text `text` (e.g. the bytes of "data" in a received message), or
 * undefined. Used to check that published data arrives byte for byte.
 */
export function rawMember(text, key) {
  let i = 0;
  const ws = () => { while (i < text.length && ' \t\r\n'.includes(text[i])) i++; };
  const skipString = () => {
    i++;
    while (i < text.length && text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
    if (i >= text.length) throw new Error('unterminated string');
    i++;
  };
  const skipValue = () => {
    if (text[i] === '"') return skipString();
    if (text[i] === '{' || text[i] === '[') {
      let depth = 0;
      do {
        if (text[i] === '"') { skipString(); continue; }
        if (text[i] === '{' || text[i] === '[') depth++;
        else if (text[i] === '}' || text[i] === ']') depth--;
        i++;
      } while (depth > 0 && i < text.length);
      if (depth !== 0) throw new Error('unbalanced JSON');
      return undefined;
    }
    while (i < text.length && !',}] \t\r\n'.includes(text[i])) i++;
    return undefined;
  };
  ws();
  if (text[i] !== '{') throw new Error('not a JSON object');
  i++;
  for (;;) {
    ws();
    if (text[i] === '}') return undefined;
    const ks = i;
    skipString();
    const name = JSON.parse(text.slice(ks, i));
    ws();
    if (text[i] !== ':') throw new Error(`expected ':' at ${i}`);
    i++;
    ws();
    const vs = i;
    skipValue();
    if (name === key) return text.slice(vs, i);
    ws();
    if (text[i] === ',') i++;
    else if (text[i] === '}') return undefined;
    else throw new Error(`unexpected character at ${i}`);
  }
}
