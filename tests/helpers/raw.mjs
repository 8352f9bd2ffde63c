// Raw TCP clients for what `ws` refuses to send: hand-written HTTP requests,
// and WebSocket frames with any opcode, RSV bits, masking, fragmentation or
// declared length. Server frames are parsed, close code and reason included.

import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { Waitable, track, untrack, withTimeout } from './server.mjs';

export const OP = Object.freeze({
  CONT: 0x0, TEXT: 0x1, BINARY: 0x2, CLOSE: 0x8, PING: 0x9, PONG: 0xa,
});

export const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/** Sec-WebSocket-Accept for a key (RFC 6455 4.2.2). */
export function acceptKey(key) {
  return createHash('sha1').update(key + WS_GUID).digest('base64');
}

/** A fresh random Sec-WebSocket-Key (16 random bytes, base64). */
export function newKey() {
  return randomBytes(16).toString('base64');
}

/**
 * Builds one client frame. `payload` is a Buffer or string (UTF-8). `rsv` is
 * the 3-bit RSV1..3 value (4 = RSV1). `mask` false sends it unmasked.
 * `lengthForm` forces the 7/16/64-bit length encoding; `declaredLength`
 * writes a length that differs from the payload actually appended.
 */
export function buildFrame({
  opcode = OP.TEXT, payload = Buffer.alloc(0), fin = true, rsv = 0, mask = true,
  maskKey, lengthForm, declaredLength,
} = {}) {
  const data = Buffer.isBuffer(payload) ? payload : Buffer.from(payload, 'utf8');
  const len = declaredLength ?? data.length;
  const form = lengthForm ?? (len < 126 ? 7 : len < 65536 ? 16 : 64);
  const head = [((fin ? 1 : 0) << 7) | ((rsv & 7) << 4) | (opcode & 0xf)];
  const maskBit = mask ? 0x80 : 0;
  let ext;
  if (form === 7) {
    head.push(maskBit | len);
    ext = Buffer.alloc(0);
  } else if (form === 16) {
    head.push(maskBit | 126);
    ext = Buffer.alloc(2);
    ext.writeUInt16BE(len);
  } else {
    head.push(maskBit | 127);
    ext = Buffer.alloc(8);
    ext.writeBigUInt64BE(BigInt(len));
  }
  if (!mask) return Buffer.concat([Buffer.from(head), ext, data]);
  const key = maskKey ?? randomBytes(4);
  const masked = Buffer.alloc(data.length);
  for (let i = 0; i < data.length; i++) masked[i] = data[i] ^ key[i & 3];
  return Buffer.concat([Buffer.from(head), ext, key, masked]);
}

/** Close frame payload: 2-byte code (omitted when undefined) + UTF-8 reason. */
export function closePayload(code, reason = '') {
  if (code === undefined) return Buffer.alloc(0);
  const r = Buffer.isBuffer(reason) ? reason : Buffer.from(reason, 'utf8');
  const b = Buffer.alloc(2 + r.length);
  b.writeUInt16BE(code);
  r.copy(b, 2);
  return b;
}

/**
 * Parses as many complete server frames as `buf` holds. Returns {frames, rest}.
 * Each frame: {fin, rsv, opcode, masked, payload, text, code, reason}.
 */
export function parseFrames(buf) {
  const frames = [];
  let off = 0;
  for (;;) {
    if (buf.length - off < 2) break;
    const b0 = buf[off];
    const b1 = buf[off + 1];
    let len = b1 & 0x7f;
    let p = off + 2;
    if (len === 126) {
      if (buf.length - p < 2) break;
      len = buf.readUInt16BE(p);
      p += 2;
    } else if (len === 127) {
      if (buf.length - p < 8) break;
      len = Number(buf.readBigUInt64BE(p));
      p += 8;
    }
    const masked = (b1 & 0x80) !== 0;
    let key = null;
    if (masked) {
      if (buf.length - p < 4) break;
      key = buf.subarray(p, p + 4);
      p += 4;
    }
    if (buf.length - p < len) break;
    const payload = Buffer.from(buf.subarray(p, p + len));
    if (key) for (let i = 0; i < payload.length; i++) payload[i] ^= key[i & 3];
    const frame = {
      fin: (b0 & 0x80) !== 0, rsv: (b0 >> 4) & 7, opcode: b0 & 0xf, masked, payload,
    };
    if (frame.opcode === OP.CLOSE) {
      frame.code = payload.length >= 2 ? payload.readUInt16BE(0) : undefined;
      frame.reason = payload.subarray(2).toString('utf8');
    }
    if (frame.opcode === OP.TEXT || frame.opcode === OP.CONT) frame.text = payload.toString('utf8');
    frames.push(frame);
    off = p + len;
  }
  return { frames, rest: buf.subarray(off) };
}

/** Splits a raw HTTP response head into {status, reason, headers, headEnd}, or null if incomplete. */
export function parseHead(buf) {
  const end = buf.indexOf('\r\n\r\n');
  if (end < 0) return null;
  const lines = buf.subarray(0, end).toString('latin1').split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})(?: (.*))?$/.exec(lines[0]);
  if (!m) throw new Error(`bad status line: ${JSON.stringify(lines[0])}`);
  const headers = {};
  for (const line of lines.slice(1)) {
    const i = line.indexOf(':');
    const name = line.slice(0, i).trim().toLowerCase();
    const value = line.slice(i + 1).trim();
    headers[name] = name in headers ? `${headers[name]}, ${value}` : value;
  }
  return { status: Number(m[1]), reason: m[2] ?? '', headers, headEnd: end + 4 };
}

/** Decodes a complete chunked body, or returns null while the last chunk has not arrived. */
function dechunk(buf) {
  const parts = [];
  let off = 0;
  for (;;) {
    const eol = buf.indexOf('\r\n', off);
    if (eol < 0) return null;
    const size = parseInt(buf.subarray(off, eol).toString('latin1'), 16);
    if (Number.isNaN(size)) throw new Error('bad chunk size');
    if (size === 0) return buf.indexOf('\r\n', eol + 2) >= 0 ? Buffer.concat(parts) : null;
    if (buf.length < eol + 2 + size + 2) return null;
    parts.push(buf.subarray(eol + 2, eol + 2 + size));
    off = eol + 2 + size + 2;
  }
}

/** Opens a TCP connection to 127.0.0.1:port (tracked for cleanup). */
export function openSocket(port, timeout = 5000) {
  const sock = net.connect({ host: '127.0.0.1', port });
  sock.setNoDelay(true);
  track(sock);
  sock.on('close', () => untrack(sock));
  return withTimeout(new Promise((resolve, reject) => {
    sock.once('connect', () => resolve(sock));
    sock.once('error', reject);
  }), timeout, 'tcp connect');
}

/**
 * Sends `request` (string or Buffer, written as is) and collects the response:
 * the head, then a body of Content-Length bytes, or everything until the
 * server closes. Resolves {status, reason, headers, body, closed, socket,
 * socketClosed (a promise of the TCP close)}.
 * With keepOpen the socket stays open (and tracked) after a complete response.
 */
export async function httpRequest(port, request, { timeout = 5000, keepOpen = false } = {}) {
  const sock = await openSocket(port);
  let buf = Buffer.alloc(0);
  let closed = false;
  const socketClosed = new Promise((resolve) => sock.on('close', resolve));
  const result = await withTimeout(new Promise((resolve, reject) => {
    const check = () => {
      const head = parseHead(buf);
      if (!head) {
        if (closed) reject(new Error(`connection closed before a response head: ${JSON.stringify(buf.toString('latin1'))}`));
        return;
      }
      const body = buf.subarray(head.headEnd);
      const cl = head.headers['content-length'];
      if (/chunked/i.test(head.headers['transfer-encoding'] ?? '')) {
        const decoded = dechunk(body);
        if (decoded) resolve({ ...head, body: decoded });
        else if (closed) reject(new Error('connection closed inside a chunked body'));
        return;
      }
      if (head.status === 101 || (cl !== undefined && body.length >= Number(cl)) || closed) {
        resolve({ ...head, body: cl !== undefined ? body.subarray(0, Number(cl)) : body });
      }
    };
    sock.on('data', (d) => { buf = Buffer.concat([buf, d]); check(); });
    sock.on('end', () => { closed = true; check(); });
    sock.on('close', () => { closed = true; check(); });
    sock.on('error', () => { closed = true; check(); });
    sock.write(request);
  }), timeout, 'HTTP response');
  if (!keepOpen) sock.destroy();
  return { ...result, closed, socket: sock, socketClosed };
}

/**
 * Builds an upgrade request. `headers` overrides/extends the defaults; a value
 * of null removes that header. `method`, `path` and `version` set the request line.
 */
export function upgradeRequest({ path = '/ws', method = 'GET', version = 'HTTP/1.1', headers = {}, key } = {}) {
  const base = {
    Host: '127.0.0.1',
    Upgrade: 'websocket',
    Connection: 'Upgrade',
    'Sec-WebSocket-Key': key ?? newKey(),
    'Sec-WebSocket-Version': '13',
  };
  const all = { ...base, ...headers };
  let req = `${method} ${path} ${version}\r\n`;
  for (const [k, v] of Object.entries(all)) if (v !== null) req += `${k}: ${v}\r\n`;
  return `${req}\r\n`;
}

/**
 * A WebSocket client over a bare socket. Frames from the server are queued;
 * nothing is answered automatically unless autoPong (pings) or autoCloseEcho
 * (the server's close) is set.
 */
export class RawClient extends Waitable {
  constructor(sock, leftover = Buffer.alloc(0), { autoPong = false, autoCloseEcho = false } = {}) {
    super();
    this.sock = sock;
    this.closeSent = false;
    this.autoCloseEcho = autoCloseEcho;
    this.buf = Buffer.alloc(0);
    this.frames = [];
    this.ended = false;
    this.autoPong = autoPong;
    this.endedAt = null;
    this.endPromise = new Promise((resolve) => {
      const done = () => {
        if (!this.ended) { this.ended = true; this.endedAt = Date.now(); }
        this.wake();
        resolve();
      };
      sock.on('end', done);
      sock.on('close', done);
      sock.on('error', (err) => { this.error = err; done(); });
    });
    sock.on('data', (d) => this.onData(d));
    track(this);
    if (leftover.length) this.onData(leftover);
  }

  /**
   * Connects and performs the upgrade by hand, checking the 101 response and
   * Sec-WebSocket-Accept. `headers` are passed to upgradeRequest().
   */
  static async connect(port, {
    path = '/ws', headers = {}, timeout = 5000, autoPong = false, autoCloseEcho = false,
  } = {}) {
    const key = newKey();
    const sock = await openSocket(port, timeout);
    let buf = Buffer.alloc(0);
    const { head, rest } = await withTimeout(new Promise((resolve, reject) => {
      const onData = (d) => {
        buf = Buffer.concat([buf, d]);
        let h;
        try { h = parseHead(buf); } catch (err) { reject(err); return; }
        if (h) {
          sock.off('data', onData);
          sock.pause();
          resolve({ head: h, rest: buf.subarray(h.headEnd) });
        }
      };
      sock.on('data', onData);
      sock.once('close', () => reject(new Error(`closed during handshake: ${buf.toString('latin1')}`)));
      sock.write(upgradeRequest({ path, headers, key }));
    }), timeout, 'upgrade response').catch((err) => { sock.destroy(); throw err; });
    if (head.status !== 101) {
      sock.destroy();
      throw new Error(`upgrade refused with ${head.status} ${head.reason}`);
    }
    if (head.headers['sec-websocket-accept'] !== acceptKey(key)) {
      sock.destroy();
      throw new Error(`bad Sec-WebSocket-Accept ${head.headers['sec-websocket-accept']}`);
    }
    sock.removeAllListeners('close');
    const client = new RawClient(sock, rest, { autoPong, autoCloseEcho });
    sock.resume();
    return client;
  }

  onData(d) {
    this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
    const { frames, rest } = parseFrames(this.buf);
    this.buf = Buffer.from(rest);
    for (const f of frames) {
      if (this.autoPong && f.opcode === OP.PING) {
        this.send({ opcode: OP.PONG, payload: f.payload });
      }
      if (this.autoCloseEcho && f.opcode === OP.CLOSE) this.echoClose(f);
      this.frames.push(f);
    }
    if (frames.length) this.wake();
  }


  /** Writes raw bytes. */
  write(buf) {
    if (!this.sock.destroyed && !this.sock.writableEnded) this.sock.write(buf);
  }

  /** Builds (see buildFrame) and writes one frame. */
  send(frameOpts) { this.write(buildFrame(frameOpts)); }

  /** One masked text frame with `text` (string or Buffer). */
  sendText(text, opts = {}) { this.send({ opcode: OP.TEXT, payload: text, ...opts }); }

  sendJSON(obj) { this.sendText(JSON.stringify(obj)); }

  sendClose(code, reason = '', opts = {}) {
    this.closeSent = true;
    this.send({ opcode: OP.CLOSE, payload: closePayload(code, reason), ...opts });
  }

  /** Answers the server's close as a well-behaved client does (once, echoing the code). */
  echoClose(frame) {
    if (this.closeSent || this.ended) return;
    this.sendClose(frame.code);
  }

  /** Next server frame, or null when the connection ended with nothing queued. */
  async nextFrame(timeout = 3000) {
    await this.waitUntil(() => this.frames.length > 0 || this.ended, timeout, 'next frame');
    return this.frames.length ? this.frames.shift() : null;
  }

  /** Next text message (non-fragmented server frame), parsed; skips ping/pong frames. */
  async nextMessage(timeout = 3000) {
    const t0 = Date.now();
    for (;;) {
      const f = await this.nextFrame(Math.max(1, timeout - (Date.now() - t0)));
      if (!f) throw new Error('connection ended while waiting for a message');
      if (f.opcode === OP.PING || f.opcode === OP.PONG) continue;
      if (f.opcode === OP.CLOSE) throw new Error(`got close ${f.code} "${f.reason}" while waiting for a message`);
      if (f.opcode !== OP.TEXT || !f.fin) throw new Error(`unexpected frame opcode ${f.opcode} fin ${f.fin}`);
      return JSON.parse(f.text);
    }
  }

  /**
   * Reads until the server's close frame; returns {code, reason, frame, before}
   * where `before` holds the frames that preceded it. Fails if the connection
   * ends without a close frame. Unless echo is false, answers the close with
   * a close frame, as a conforming client does.
   */
  async expectClose(timeout = 3000, { echo = true } = {}) {
    const t0 = Date.now();
    const before = [];
    for (;;) {
      const f = await this.nextFrame(Math.max(1, timeout - (Date.now() - t0)));
      if (!f) throw new Error(`connection ended without a close frame (after ${before.length} frames)`);
      if (f.opcode === OP.CLOSE) {
        if (echo) this.echoClose(f);
        return { code: f.code, reason: f.reason, frame: f, before };
      }
      before.push(f);
    }
  }

  /** Resolves when the TCP connection has ended (bounded). */
  async waitEnd(timeout = 3000) {
    await withTimeout(this.endPromise, timeout, 'server to close the TCP connection');
  }

  pause() { this.sock.pause(); }

  resume() { this.sock.resume(); }

  destroy() {
    this.sock.destroy();
    untrack(this);
  }
}
