// Framing rules (issue #2, section 2) over a raw socket: masking, RSV bits,
// opcodes, control-frame limits, incremental UTF-8 validation, binary refusal,
// close-code validation, fragmentation with interleaved pings, message size
// limit (1009), large messages, and the close handshake.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { cleanup, connect, rawMember, sleep, startServer } from '../helpers/server.mjs';
import { buildFrame, closePayload, OP, RawClient } from '../helpers/raw.mjs';

const T = { timeout: 15000 };
const MAX_MESSAGE = 65536;

let strict; // maxMessageSize 64 KiB
let dflt;   // default limits (1 MiB message, 512 KiB publish)

before(async () => {
  [strict, dflt] = await Promise.all([
    startServer({ config: { maxMessageSize: MAX_MESSAGE } }),
    startServer(),
  ]);
}, { timeout: 30000 });

after(async () => {
  cleanup();
  const results = await Promise.allSettled([strict?.stop(), dflt?.stop()]);
  for (const r of results) if (r.status === 'rejected') throw r.reason;
}, { timeout: 30000 });

function raw(server = strict) {
  return RawClient.connect(server.port);
}

/**
 * Expects the server's close frame with `code` (unmasked, a valid close
 * payload) and then the TCP close. `codes` may be an array of acceptable codes.
 */
async function expectFail(client, codes, what) {
  const r = await client.expectClose(3000);
  const ok = Array.isArray(codes) ? codes : [codes];
  assert.ok(ok.includes(r.code), `${what}: close code ${r.code} "${r.reason}", expected ${ok.join(' or ')}`);
  assert.equal(r.frame.masked, false, 'server frames are never masked');
  assert.equal(r.frame.fin, true);
  assert.ok(r.frame.payload.length <= 125, 'close payload fits a control frame');
  assert.deepEqual(r.before.filter((f) => f.opcode !== OP.PING && f.opcode !== OP.PONG), [],
    `${what}: no data before the close`);
  await client.waitEnd(3000);
  return r;
}

/** A subscribe round trip on a raw client (proves the connection is healthy). */
async function roundTrip(client, id = 1) {
  client.sendJSON({ type: 'subscribe', channel: 'frames', id });
  assert.deepEqual(await client.nextMessage(), { type: 'ack', id });
}

describe('frames the server must refuse with 1002', () => {
  it('an unmasked client frame', T, async () => {
    const c = await raw();
    c.sendText('{"type":"subscribe","channel":"a","id":1}', { mask: false });
    await expectFail(c, 1002, 'unmasked');
  });

  for (const rsv of [4, 2, 1]) {
    it(`RSV bits ${rsv.toString(2).padStart(3, '0')} set`, T, async () => {
      const c = await raw();
      c.sendText('{"type":"subscribe","channel":"a","id":1}', { rsv });
      await expectFail(c, 1002, `rsv ${rsv}`);
    });
  }

  for (const opcode of [0x3, 0x7, 0xb, 0xf]) {
    it(`reserved opcode 0x${opcode.toString(16)}`, T, async () => {
      const c = await raw();
      c.send({ opcode, payload: 'x' });
      await expectFail(c, 1002, `opcode ${opcode}`);
    });
  }

  it('a fragmented ping (FIN=0 control frame)', T, async () => {
    const c = await raw();
    c.send({ opcode: OP.PING, payload: 'abc', fin: false });
    await expectFail(c, 1002, 'fragmented ping');
  });

  it('a control frame over 125 bytes (ping 126, close 126)', T, async () => {
    const c = await raw();
    c.send({ opcode: OP.PING, payload: Buffer.alloc(126, 0x61) });
    await expectFail(c, 1002, 'ping 126');
    const d = await raw();
    d.send({ opcode: OP.CLOSE, payload: closePayload(1000, 'r'.repeat(124)) });
    await expectFail(d, 1002, 'close 126');
  });

  it('a continuation frame with no message in progress', T, async () => {
    const c = await raw();
    c.send({ opcode: OP.CONT, payload: 'orphan' });
    await expectFail(c, 1002, 'orphan continuation');
  });

  it('a new text frame while a fragmented message is in progress', T, async () => {
    const c = await raw();
    c.send({ opcode: OP.TEXT, payload: '{"type":', fin: false });
    c.send({ opcode: OP.TEXT, payload: '"subscribe"}' });
    await expectFail(c, 1002, 'text inside a fragmented message');
  });

  it('a 64-bit length with the most significant bit set', T, async () => {
    const c = await raw();
    const head = Buffer.from([0x81, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 5, 1, 2, 3, 4]);
    c.write(head);
    await expectFail(c, [1002, 1009], 'length with MSB set');
  });
});

describe('failing the connection (RFC 6455 7.1.7)', () => {
  for (const [what, frame, code] of [
    ['unmasked frame', { opcode: OP.TEXT, payload: '{}', mask: false }, 1002],
    ['invalid UTF-8', { opcode: OP.TEXT, payload: Buffer.from([0xff]) }, 1007],
  ]) {
    it(`after ${what} the server closes TCP without waiting for a close reply`, T, async () => {
      const c = await raw();
      c.send(frame);
      const t0 = Date.now();
      const r = await c.expectClose(3000, { echo: false });
      assert.equal(r.code, code);
      await c.waitEnd(3000);
      const elapsed = c.endedAt - t0;
      assert.ok(elapsed < 1000, `TCP closed ${elapsed} ms after the failure`);
    });
  }
});

describe('UTF-8 validation (1007)', () => {
  it('invalid UTF-8 in a single text frame', T, async () => {
    const c = await raw();
    c.sendText(Buffer.from([0x7b, 0x22, 0xc3, 0x28, 0x22, 0x7d])); // {"\xC3("}
    await expectFail(c, 1007, 'bad utf-8');
  });

  it('overlong encodings and surrogates are invalid', T, async () => {
    for (const bytes of [[0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xff]]) {
      const c = await raw();
      c.sendText(Buffer.from(bytes));
      await expectFail(c, 1007, `bytes ${Buffer.from(bytes).toString('hex')}`);
    }
  });

  it('invalid UTF-8 split across fragments', T, async () => {
    const c = await raw();
    c.send({ opcode: OP.TEXT, payload: Buffer.from('{"data":"abc\xe2\x82', 'latin1'), fin: false });
    c.send({ opcode: OP.CONT, payload: Buffer.from('\x28"}', 'latin1') });
    await expectFail(c, 1007, 'bad utf-8 across fragments');
  });

  it('is detected in the first fragment, before the message ends', T, async () => {
    const c = await raw();
    c.send({ opcode: OP.TEXT, payload: Buffer.from([0x61, 0x62, 0xff]), fin: false });
    await expectFail(c, 1007, 'bad first fragment');
  });

  it('a text message that ends inside a multi-byte sequence', T, async () => {
    const c = await raw();
    c.send({ opcode: OP.TEXT, payload: Buffer.from('"x', 'latin1'), fin: false });
    c.send({ opcode: OP.CONT, payload: Buffer.from([0xe2, 0x82]) });
    await expectFail(c, 1007, 'truncated sequence at the end');
  });

  it('a valid multi-byte character split across fragments is accepted', T, async () => {
    const c = await raw();
    const sub = await connect(strict.url);
    assert.deepEqual(await sub.request({ type: 'subscribe', channel: 'utf', id: 1 }), { type: 'ack', id: 1 });
    const msg = Buffer.from('{"type":"publish","channel":"utf","data":"h€llo 😀","id":2}', 'utf8');
    const euro = msg.indexOf(Buffer.from('€'));
    const emoji = msg.indexOf(Buffer.from('😀'));
    c.send({ opcode: OP.TEXT, payload: msg.subarray(0, euro + 1), fin: false });
    c.send({ opcode: OP.CONT, payload: msg.subarray(euro + 1, emoji + 2), fin: false });
    c.send({ opcode: OP.CONT, payload: msg.subarray(emoji + 2) });
    assert.deepEqual(await c.nextMessage(), { type: 'ack', id: 2, delivered: 1 });
    const item = await sub.nextItem();
    assert.equal(rawMember(item.raw, 'data'), '"h€llo 😀"');
    await sub.close();
    c.destroy();
  });

  it('invalid UTF-8 in a close reason', T, async () => {
    const c = await raw();
    c.sendClose(1000, Buffer.from([0xc3, 0x28]));
    await expectFail(c, [1007, 1002], 'bad close reason');
  });
});

describe('binary messages (1003)', () => {
  it('a binary message is refused with 1003 and a reason', T, async () => {
    const c = await raw();
    c.send({ opcode: OP.BINARY, payload: Buffer.from([1, 2, 3]) });
    const r = await expectFail(c, 1003, 'binary');
    assert.ok(r.reason.length > 0, 'close 1003 carries a reason');
  });

  it('ws: sending binary closes with 1003', T, async () => {
    const c = await connect(strict.url);
    c.ws.send(Buffer.from([0, 1, 2]), { binary: true });
    const info = await Promise.race([c.closed, sleep(3000).then(() => null)]);
    assert.ok(info, 'closed within 3 s');
    assert.equal(info.code, 1003);
    assert.ok(info.reason.length > 0);
  });
});

describe('close handshake', () => {
  it('client close 1000 gets a close 1000 echo, then the server closes TCP', T, async () => {
    const c = await raw();
    await roundTrip(c);
    c.sendClose(1000, 'bye');
    const r = await c.expectClose();
    assert.equal(r.code, 1000);
    assert.equal(r.frame.masked, false);
    await c.waitEnd(3000);
  });

  it('a close without a code gets a close back', T, async () => {
    const c = await raw();
    c.sendClose(undefined);
    const r = await c.expectClose();
    assert.ok(r.code === undefined || r.code === 1000, `got ${r.code}`);
    await c.waitEnd(3000);
  });

  it('application codes 3000-4999 and 1001 are valid', T, async () => {
    for (const code of [1001, 3000, 4999]) {
      const c = await raw();
      c.sendClose(code, 'ok');
      const r = await c.expectClose();
      assert.ok(r.code === code || r.code === 1000, `close ${code} answered with ${r.code}`);
      await c.waitEnd(3000);
    }
  });

  for (const code of [999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 0]) {
    it(`invalid close code ${code} -> 1002`, T, async () => {
      const c = await raw();
      c.sendClose(code);
      await expectFail(c, 1002, `close code ${code}`);
    });
  }

  it('a close payload of 1 byte -> 1002', T, async () => {
    const c = await raw();
    c.send({ opcode: OP.CLOSE, payload: Buffer.from([0x03]) });
    await expectFail(c, 1002, 'one-byte close');
  });

  it('ws: client close 1000 is echoed', T, async () => {
    const c = await connect(strict.url);
    const info = await c.close(1000, 'done');
    assert.equal(info.code, 1000);
  });
});

describe('fragmentation and control frames', () => {
  it('a fragmented text message with a ping interleaved works; pong echoes the payload', T, async () => {
    const c = await raw();
    c.send({ opcode: OP.TEXT, payload: '{"type":"subs', fin: false });
    c.send({ opcode: OP.CONT, payload: 'cribe","chan', fin: false });
    c.send({ opcode: OP.PING, payload: 'ping-payload-42' });
    const pong = await c.nextFrame();
    assert.ok(pong, 'a pong before the message ends');
    assert.equal(pong.opcode, OP.PONG);
    assert.equal(pong.masked, false);
    assert.deepEqual(pong.payload, Buffer.from('ping-payload-42'));
    c.send({ opcode: OP.CONT, payload: 'nel":"frag","id":7}' });
    assert.deepEqual(await c.nextMessage(), { type: 'ack', id: 7 });
  });

  it('pongs echo empty and 125-byte ping payloads; unsolicited pongs are ignored', T, async () => {
    const c = await raw();
    c.send({ opcode: OP.PING });
    let f = await c.nextFrame();
    assert.equal(f.opcode, OP.PONG);
    assert.equal(f.payload.length, 0);
    const big = Buffer.from(Array.from({ length: 125 }, (_, i) => i));
    c.send({ opcode: OP.PING, payload: big });
    f = await c.nextFrame();
    assert.equal(f.opcode, OP.PONG);
    assert.deepEqual(f.payload, big);
    c.send({ opcode: OP.PONG, payload: 'unsolicited' });
    await roundTrip(c, 3);
  });

  it('a message in many 1-byte fragments', T, async () => {
    const c = await raw();
    const text = Buffer.from('{"type":"subscribe","channel":"tiny","id":9}');
    for (let i = 0; i < text.length; i++) {
      c.send({ opcode: i === 0 ? OP.TEXT : OP.CONT, payload: text.subarray(i, i + 1), fin: i === text.length - 1 });
    }
    assert.deepEqual(await c.nextMessage(), { type: 'ack', id: 9 });
  });

  it('empty fragments are allowed', T, async () => {
    const c = await raw();
    c.send({ opcode: OP.TEXT, payload: '', fin: false });
    c.send({ opcode: OP.CONT, payload: '{"type":"subscribe","channel":"e","id":4}', fin: false });
    c.send({ opcode: OP.CONT, payload: '' });
    assert.deepEqual(await c.nextMessage(), { type: 'ack', id: 4 });
  });

  it('frames split byte by byte across TCP writes', T, async () => {
    const c = await raw();
    const bytes = Buffer.concat([
      buildFrame({ opcode: OP.TEXT, payload: '{"type":"subscribe",', fin: false }),
      buildFrame({ opcode: OP.PING, payload: 'p' }),
      buildFrame({ opcode: OP.CONT, payload: '"channel":"slow","id":11}' }),
    ]);
    for (let i = 0; i < bytes.length; i++) {
      c.write(bytes.subarray(i, i + 1));
      if (i % 8 === 0) await sleep(1);
    }
    const pong = await c.nextFrame();
    assert.equal(pong.opcode, OP.PONG);
    assert.deepEqual(pong.payload, Buffer.from('p'));
    assert.deepEqual(await c.nextMessage(), { type: 'ack', id: 11 });
  });

  it('connections with frames in progress do not disturb each other', T, async () => {
    // The decoder is lent per read to connections without a frame in progress
    // (docs/architecture.md, "Memory per connection"): interleave connections
    // holding half a header, half a payload and half a fragmented message with
    // one sending whole frames, and a protocol error in the middle.
    const [a, b, f, w, bad] = await Promise.all([raw(), raw(), raw(), raw(), raw()]);
    const sub = (ch, id) => buildFrame({ opcode: OP.TEXT, payload: JSON.stringify({ type: 'subscribe', channel: ch, id }) });
    const fa = sub('lend-a', 21);
    const fb = sub('lend-b', 22);
    const frag1 = buildFrame({ opcode: OP.TEXT, payload: '{"type":"subscribe",', fin: false });
    const frag2 = buildFrame({ opcode: OP.CONT, payload: '"channel":"lend-f","id":23}' });
    b.write(fb.subarray(0, 1));          // half a header
    a.write(fa.subarray(0, 10));         // a header and part of the payload
    f.write(frag1);                      // a whole first fragment: the message is open
    await sleep(20);
    w.write(sub('lend-w', 24));
    assert.deepEqual(await w.nextMessage(), { type: 'ack', id: 24 });
    bad.sendText('{"type":"subscribe","channel":"x","id":1}', { mask: false });
    await expectFail(bad, 1002, 'unmasked frame');
    w.write(sub('lend-w', 25));
    assert.deepEqual(await w.nextMessage(), { type: 'ack', id: 25 });
    a.write(fa.subarray(10));
    b.write(fb.subarray(1));
    f.write(frag2);
    assert.deepEqual(await a.nextMessage(), { type: 'ack', id: 21 });
    assert.deepEqual(await b.nextMessage(), { type: 'ack', id: 22 });
    assert.deepEqual(await f.nextMessage(), { type: 'ack', id: 23 });
    await roundTrip(a, 26);
  });

  it('16-bit and 64-bit payload lengths', T, async () => {
    const c = await raw(dflt);
    const pad = (n) => `{"type":"subscribe","channel":"len","id":12,"pad":"${'p'.repeat(n)}"}`;
    c.sendText(pad(300)); // 16-bit length
    assert.deepEqual(await c.nextMessage(), { type: 'ack', id: 12 });
    c.sendText(pad(70000)); // 64-bit length
    assert.deepEqual(await c.nextMessage(), { type: 'ack', id: 12 });
    c.sendText('{"type":"subscribe","channel":"len","id":13}', { lengthForm: 64 }); // non-minimal 64-bit
    const f = await c.nextFrame();
    assert.ok(f.opcode === OP.TEXT || f.opcode === OP.CLOSE, 'answers or fails, never hangs');
  });
});

describe('maxMessageSize (64 KiB) -> 1009', () => {
  /** A publish command whose whole text is exactly `n` bytes. */
  function publishOfSize(n, channel = 'size') {
    const head = `{"type":"publish","channel":"${channel}","id":1,"data":"`;
    const tail = '"}';
    return head + 'd'.repeat(n - head.length - tail.length) + tail;
  }

  it('a single frame one byte over the limit', T, async () => {
    const c = await raw();
    c.sendText(publishOfSize(MAX_MESSAGE + 1));
    await expectFail(c, 1009, 'frame over limit');
  });

  it('a message of exactly the limit is accepted', T, async () => {
    const c = await raw();
    const text = publishOfSize(MAX_MESSAGE);
    assert.equal(Buffer.byteLength(text), MAX_MESSAGE);
    c.sendText(text);
    assert.deepEqual(await c.nextMessage(), { type: 'ack', id: 1, delivered: 0 });
  });

  it('a declared huge length is refused from the header alone', T, async () => {
    const c = await raw();
    c.write(buildFrame({ opcode: OP.TEXT, payload: Buffer.alloc(0), declaredLength: 2 ** 40 }));
    await expectFail(c, 1009, 'declared 1 TiB');
  });

  it('fragments that add up past the limit', T, async () => {
    const c = await raw();
    const part = Buffer.alloc(40000, 0x61);
    c.send({ opcode: OP.TEXT, payload: part, fin: false });
    c.send({ opcode: OP.CONT, payload: part, fin: true });
    await expectFail(c, 1009, 'fragmented over limit');
  });

  it('ws: a 100 KB message closes with 1009', T, async () => {
    const c = await connect(strict.url);
    c.sendRaw(publishOfSize(100000));
    const info = await Promise.race([c.closed, sleep(3000).then(() => null)]);
    assert.ok(info, 'closed within 3 s');
    assert.equal(info.code, 1009);
  });
});

describe('large messages (default limits)', () => {
  /** ~`n` bytes of varied JSON with numbers that a reserializer would change. */
  function bigData(n) {
    const parts = [];
    let size = 2;
    for (let i = 0; size < n; i++) {
      const p = `{"i":${i},"f":0.10000000000000001,"big":123456789012345678901234567890,"s":"chunk ${i} é ☃"}`;
      parts.push(p);
      size += p.length + 1;
    }
    return `[${parts.join(',')}]`;
  }

  it('a ~400 KB publish is delivered intact to every subscriber', T, async () => {
    const [s1, s2, pub] = await Promise.all([connect(dflt.url), connect(dflt.url), connect(dflt.url)]);
    for (const [s, id] of [[s1, 1], [s2, 2]]) {
      assert.deepEqual(await s.request({ type: 'subscribe', channel: 'large', id }), { type: 'ack', id });
    }
    const data = bigData(400 * 1024);
    pub.sendRaw(`{"type":"publish","channel":"large","data":${data},"id":3}`);
    assert.deepEqual(await pub.next(5000), { type: 'ack', id: 3, delivered: 2 });
    for (const s of [s1, s2]) {
      const item = await s.nextItem(5000);
      assert.equal(item.json.type, 'message');
      assert.equal(item.json.channel, 'large');
      const got = rawMember(item.raw, 'data');
      assert.equal(got.length, data.length);
      assert.ok(got === data, 'data bytes identical');
    }
    await Promise.all([s1.close(), s2.close(), pub.close()]);
  });

  it('a ~400 KB publish sent in 64 KiB fragments from a raw client', T, async () => {
    const sub = await connect(dflt.url);
    assert.deepEqual(await sub.request({ type: 'subscribe', channel: 'large2', id: 1 }), { type: 'ack', id: 1 });
    const c = await raw(dflt);
    const data = bigData(400 * 1024);
    const msg = Buffer.from(`{"type":"publish","channel":"large2","data":${data},"id":2}`);
    const step = 65536;
    for (let off = 0; off < msg.length; off += step) {
      c.send({
        opcode: off === 0 ? OP.TEXT : OP.CONT,
        payload: msg.subarray(off, off + step),
        fin: off + step >= msg.length,
      });
      if (off === step) c.send({ opcode: OP.PING, payload: 'mid' });
    }
    const pong = await c.nextFrame(5000);
    assert.equal(pong.opcode, OP.PONG);
    assert.deepEqual(await c.nextMessage(5000), { type: 'ack', id: 2, delivered: 1 });
    const item = await sub.nextItem(5000);
    assert.ok(rawMember(item.raw, 'data') === data, 'data bytes identical');
    await sub.close();
    c.destroy();
  });

  it('a server frame over 64 KiB uses the 64-bit length form, unmasked', T, async () => {
    const c = await raw(dflt);
    const pub = await connect(dflt.url);
    await roundTrip(c, 5);
    const data = `"${'x'.repeat(70000)}"`;
    pub.sendRaw(`{"type":"publish","channel":"frames","data":${data},"id":6}`);
    assert.deepEqual(await pub.next(), { type: 'ack', id: 6, delivered: 1 });
    const f = await c.nextFrame(5000);
    assert.equal(f.opcode, OP.TEXT);
    assert.equal(f.fin, true);
    assert.equal(f.masked, false);
    assert.equal(f.rsv, 0);
    assert.equal(rawMember(f.text, 'data'), data);
    await pub.close();
    c.destroy();
  });
});
