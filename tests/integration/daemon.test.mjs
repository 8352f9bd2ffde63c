// The realtimed daemon (issue #2, section 6): --help, --version, --path,
// --config and --check-config, REALTIME_* environment overrides with the
// precedence flags > environment > file > defaults, precise configuration
// errors naming the key, and log lines with time and level on stderr.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { cleanup, connect, daemonEnv, realtimedPath, startServer } from '../helpers/server.mjs';
import { httpRequest, upgradeRequest } from '../helpers/raw.mjs';

const T = { timeout: 20000 };

let dir;
let busy; // a TCP server holding a port, so binding it fails

before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'rt-daemon-'));
  busy = net.createServer();
  await new Promise((resolve) => busy.listen(0, '127.0.0.1', resolve));
}, { timeout: 10000 });

after(async () => {
  cleanup();
  await new Promise((resolve) => busy.close(resolve));
  rmSync(dir, { recursive: true, force: true });
});

/** Writes `content` (object -> JSON, string as is) to a file in the temp dir. */
function file(name, content) {
  const p = path.join(dir, name);
  writeFileSync(p, typeof content === 'string' ? content : JSON.stringify(content));
  return p;
}

/**
 * Runs realtimed with `args` to completion (`timeout` ms, then SIGKILL and
 * failure). Resolves {code, signal, stdout, stderr}.
 */
function run(args, { env = {}, timeout = 5000 } = {}) {
  return new Promise((resolve, reject) => {
    const proc = spawn(realtimedPath(), args, { env: daemonEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (d) => { stdout += d; });
    proc.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`realtimed ${args.join(' ')} still running after ${timeout} ms\nstdout:\n${stdout}\nstderr:\n${stderr}`));
    }, timeout);
    proc.on('error', reject);
    proc.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** Upgrade status for `path` on a running server. */
async function statusOf(srv, p) {
  return (await httpRequest(srv.port, upgradeRequest({ path: p }))).status;
}

describe('command line', () => {
  it('--version prints the version and exits 0', T, async () => {
    for (const flag of ['--version', '-V']) {
      const r = await run([flag]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /\b\d+\.\d+\.\d+\b/);
    }
  });

  it('--help lists the flags and exits 0', T, async () => {
    const r = await run(['--help']);
    assert.equal(r.code, 0, r.stderr);
    for (const flag of ['--host', '--port', '--path', '--config', '--check-config', '--help', '--version']) {
      assert.ok(r.stdout.includes(flag), `--help mentions ${flag}`);
    }
  });

  it('an unknown flag or a bad port fails with a message', T, async () => {
    for (const args of [['--bogus'], ['--port', 'eighty'], ['--port', '70000'], ['--port']]) {
      const r = await run(args);
      assert.notEqual(r.code, 0, `${args.join(' ')} exited 0`);
      assert.equal(r.signal, null);
      assert.ok(r.stderr.trim().length > 0, `${args.join(' ')}: message on stderr`);
      assert.ok(!/listening on/.test(r.stdout));
    }
  });

  it('--path serves the WebSocket endpoint on another path', T, async () => {
    const srv = await startServer({ args: ['--path', '/custom/rt'] });
    try {
      assert.equal(await statusOf(srv, '/custom/rt'), 101);
      assert.equal(await statusOf(srv, '/ws'), 404);
      const c = await connect(`ws://127.0.0.1:${srv.port}/custom/rt`);
      assert.deepEqual(await c.request({ type: 'subscribe', channel: 'p', id: 1 }), { type: 'ack', id: 1 });
      await c.close();
    } finally {
      await srv.stop();
    }
  });

  it('prints "listening on HOST:PORT" once, and logs with time and level on stderr', T, async () => {
    const srv = await startServer();
    const c = await connect(srv.url);
    await c.close();
    const res = await srv.stop();
    assert.equal(res.code, 0);
    const listening = srv.stdout().split('\n').filter((l) => /listening on/.test(l));
    assert.deepEqual(listening, [`listening on 127.0.0.1:${srv.port}`]);
    const lines = srv.stderr().split('\n').filter((l) => l.trim());
    assert.ok(lines.length > 0, 'some log lines');
    for (const line of lines) {
      assert.match(line, /\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}/, `time in "${line}"`);
      assert.match(line, /\b(DEBUG|INFO|WARN|WARNING|ERROR)\b/i, `level in "${line}"`);
    }
  });
});

describe('configuration file and --check-config', () => {
  it('--check-config accepts a valid file and exits 0 without serving', T, async () => {
    const cfg = file('good.json', {
      port: 0, host: '127.0.0.1', path: '/ws', pingInterval: 1000, presenceTimeout: 60000,
      requireAuth: false, maxMessageSize: 65536, maxPublishSize: 32768, maxSubscriptions: 10,
      maxQueuedBytes: 1048576, maxHeaderSize: 8192, handshakeTimeout: 1000, shutdownTimeout: 1000,
      maxJsonDepth: 32,
    });
    const r = await run(['--check-config', '--config', cfg]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!/listening on/.test(r.stdout), 'does not start serving');
  });

  it('an invalid value is refused with a message naming the key (both modes)', T, async () => {
    const cases = [
      ['pingInterval', { pingInterval: 'fast' }],
      ['port', { port: 70000 }],
      ['maxMessageSize', { maxMessageSize: -1 }],
      ['handshakeTimeout', { handshakeTimeout: [] }],
      ['requireAuth', { requireAuth: 'yes' }],
    ];
    for (const [key, cfg] of cases) {
      const f = file(`bad-${key}.json`, cfg);
      for (const args of [['--check-config', '--config', f], ['--host', '127.0.0.1', '--port', '0', '--config', f]]) {
        const r = await run(args);
        assert.notEqual(r.code, 0, `${JSON.stringify(cfg)} (${args[0]}) exited 0`);
        assert.equal(r.signal, null);
        assert.ok(r.stderr.includes(key), `stderr names ${key}: ${r.stderr}`);
        assert.ok(!/listening on/.test(r.stdout));
      }
    }
  });

  it('a file that is not JSON, or missing, is refused', T, async () => {
    const broken = file('broken.json', '{"port": 8080,');
    for (const f of [broken, path.join(dir, 'does-not-exist.json')]) {
      const r = await run(['--check-config', '--config', f]);
      assert.notEqual(r.code, 0, `${f} accepted`);
      assert.ok(r.stderr.trim().length > 0);
    }
  });

  it('keys from the file are applied (pingInterval from the file pings a client)', T, async () => {
    const srv = await startServer({ config: { pingInterval: 200 } });
    try {
      const c = await connect(srv.url);
      await c.waitUntil(() => c.pings.length >= 2, 3000, 'two pings at 200 ms');
      await c.close();
    } finally {
      await srv.stop();
    }
  });
});

describe('environment overrides: flags > environment > file > defaults', () => {
  it('REALTIME_PATH overrides the file', T, async () => {
    const srv = await startServer({ config: { path: '/fromfile' }, env: { REALTIME_PATH: '/fromenv' } });
    try {
      assert.equal(await statusOf(srv, '/fromenv'), 101);
      assert.equal(await statusOf(srv, '/fromfile'), 404);
    } finally {
      await srv.stop();
    }
  });

  it('--path overrides REALTIME_PATH and the file', T, async () => {
    const srv = await startServer({
      config: { path: '/fromfile' }, env: { REALTIME_PATH: '/fromenv' }, args: ['--path', '/fromflag'],
    });
    try {
      assert.equal(await statusOf(srv, '/fromflag'), 101);
      assert.equal(await statusOf(srv, '/fromenv'), 404);
    } finally {
      await srv.stop();
    }
  });

  it('REALTIME_HOST and REALTIME_PORT override the file', T, async () => {
    const busyPort = busy.address().port;
    const srv = await startServer({
      listenArgs: [],
      config: { host: '0.0.0.0', port: busyPort },
      env: { REALTIME_HOST: '127.0.0.1', REALTIME_PORT: '0' },
    });
    try {
      assert.notEqual(srv.port, busyPort);
      assert.equal(await statusOf(srv, '/ws'), 101);
    } finally {
      await srv.stop();
    }
  });

  it('--port overrides REALTIME_PORT', T, async () => {
    const busyPort = busy.address().port;
    const srv = await startServer({ env: { REALTIME_PORT: String(busyPort) } }); // passes --port 0
    try {
      assert.notEqual(srv.port, busyPort);
    } finally {
      await srv.stop();
    }
  });

  it('a port in use fails to start with a non-zero exit', T, async () => {
    const r = await run(['--host', '127.0.0.1', '--port', String(busy.address().port)]);
    assert.notEqual(r.code, 0);
    assert.equal(r.signal, null);
    assert.ok(r.stderr.trim().length > 0);
  });

  it('an invalid environment value is refused naming the variable or key', T, async () => {
    const r = await run(['--check-config'], { env: { REALTIME_PING_INTERVAL: 'soon' } });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /REALTIME_PING_INTERVAL|pingInterval/);
  });
});
