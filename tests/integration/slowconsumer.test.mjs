// Slow consumers (issue #2, section 4) with maxQueuedBytes 256 KiB: a client
// that stops reading is cut off (close 1008 or the socket closed) once its
// unsent bytes pass the cap, while another subscriber receives every message
// and the publisher's acks keep coming.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { cleanup, connect, startServer } from '../helpers/server.mjs';
import { OP, RawClient } from '../helpers/raw.mjs';

const CAP = 262144;
const MSG_PAD = 8000;  // ~8 KB per message
const BATCH = 16;      // 128 KB in flight per batch: the normal reader never nears the cap
const MAX_MESSAGES = 8000; // 64 MB: far beyond kernel socket buffers plus the cap

let srv;

before(async () => { srv = await startServer({ config: { maxQueuedBytes: CAP } }); }, { timeout: 15000 });

after(async () => {
  cleanup();
  await srv?.stop();
}, { timeout: 20000 });

/**
 * Publishes batches of ~8 KB messages on `channel` until the acks' `delivered`
 * drops from `subscribers` to `subscribers - 1`, then `extraBatches` more.
 * Checks every ack (ids in order, counts never going back up) and that
 * `normal` receives every message in order. Returns the id of the first ack
 * after the cut and the number sent.
 */
async function floodUntilCut(pub, normal, channel, subscribers, extraBatches) {
  const pad = 'x'.repeat(MSG_PAD);
  let sent = 0;
  let cutAt = null;
  while (sent < MAX_MESSAGES) {
    for (let i = 0; i < BATCH; i++) {
      pub.send({ type: 'publish', channel, data: { seq: sent + i, pad }, id: sent + i });
    }
    const acks = await pub.nextN(BATCH, 10000);
    for (let i = 0; i < BATCH; i++) {
      const ack = acks[i];
      assert.equal(ack.type, 'ack', JSON.stringify(ack));
      assert.equal(ack.id, sent + i);
      if (cutAt === null) {
        assert.ok([subscribers, subscribers - 1].includes(ack.delivered), `delivered ${ack.delivered}`);
        if (ack.delivered === subscribers - 1) cutAt = ack.id;
      } else {
        assert.equal(ack.delivered, subscribers - 1, `after the cut (id ${cutAt}), id ${ack.id}`);
      }
    }
    const msgs = await normal.nextN(BATCH, 10000);
    for (let i = 0; i < BATCH; i++) {
      assert.equal(msgs[i].type, 'message');
      assert.equal(msgs[i].channel, channel);
      assert.equal(msgs[i].data.seq, sent + i, 'the normal subscriber gets every message in order');
      assert.equal(msgs[i].data.pad.length, MSG_PAD);
    }
    sent += BATCH;
    if (cutAt !== null && sent >= cutAt + extraBatches * BATCH) break;
  }
  assert.ok(cutAt !== null, `slow consumer not cut after ${sent} messages (${sent * MSG_PAD} bytes)`);
  return { cutAt, sent };
}

/**
 * Resumes a paused raw client and reads to the end. Checks that what arrived
 * is an in-order prefix of the stream, ending in close 1008 (with a reason) or
 * in the TCP close, and returns how many messages arrived.
 */
async function drainCut(slow, channel) {
  slow.autoCloseEcho = true;
  slow.resume();
  await slow.waitEnd(15000);
  const frames = slow.frames.splice(0);
  const closeIdx = frames.findIndex((f) => f.opcode === OP.CLOSE);
  if (closeIdx >= 0) {
    assert.equal(frames[closeIdx].code, 1008, `close ${frames[closeIdx].code} "${frames[closeIdx].reason}"`);
    assert.ok(frames[closeIdx].reason.length > 0, 'close 1008 carries a reason');
    assert.equal(closeIdx, frames.length - 1, 'nothing after the close frame');
  }
  const texts = frames.filter((f) => f.opcode === OP.TEXT);
  texts.forEach((f, i) => {
    assert.equal(f.fin, true);
    const m = JSON.parse(f.text);
    assert.equal(m.channel, channel);
    assert.equal(m.data.seq, i, 'the slow client got an in-order prefix, no frame torn or skipped');
  });
  assert.equal(frames.length - texts.length - (closeIdx >= 0 ? 1 : 0),
    frames.filter((f) => f.opcode === OP.PING).length, 'only text, ping and close frames');
  return texts.length;
}

describe('slow consumer (maxQueuedBytes 256 KiB)', () => {
  it('is cut off while a normal subscriber gets every message and acks keep coming', { timeout: 90000 }, async () => {
    const slow = await RawClient.connect(srv.port);
    slow.sendJSON({ type: 'subscribe', channel: 'firehose', id: 1 });
    assert.deepEqual(await slow.nextMessage(), { type: 'ack', id: 1 });
    slow.pause();

    const normal = await connect(srv.url);
    assert.deepEqual(await normal.request({ type: 'subscribe', channel: 'firehose', id: 1 }), { type: 'ack', id: 1 });
    const pub = await connect(srv.url);

    const { cutAt, sent } = await floodUntilCut(pub, normal, 'firehose', 2, 20);
    await normal.expectNothing(200);

    const got = await drainCut(slow, 'firehose');
    assert.ok(got <= cutAt, `slow client received ${got} messages, more than were sent before the cut (${cutAt})`);

    // The others are unaffected: same connections keep working.
    assert.equal(normal.closeInfo, null);
    assert.equal(pub.closeInfo, null);
    assert.deepEqual(await pub.request({ type: 'publish', channel: 'firehose', data: 'end', id: sent }),
      { type: 'ack', id: sent, delivered: 1 });
    assert.deepEqual(await normal.next(), { type: 'message', channel: 'firehose', data: 'end' });
    await Promise.all([normal.close(), pub.close()]);
  });

  it('a slow consumer on several channels is cut once and leaves all of them', { timeout: 90000 }, async () => {
    const slow = await RawClient.connect(srv.port);
    for (const [channel, id] of [['a:1', 1], ['a:2', 2]]) {
      slow.sendJSON({ type: 'subscribe', channel, id });
      assert.deepEqual(await slow.nextMessage(), { type: 'ack', id });
    }
    slow.pause();
    const normal = await connect(srv.url);
    assert.deepEqual(await normal.request({ type: 'subscribe', channel: 'a:1', id: 1 }), { type: 'ack', id: 1 });
    const pub = await connect(srv.url);

    await floodUntilCut(pub, normal, 'a:1', 2, 2);
    assert.deepEqual(await pub.request({ type: 'publish', channel: 'a:2', data: 'x', id: 1 }),
      { type: 'ack', id: 1, delivered: 0 }, 'the cut client left its other channel too');
    await drainCut(slow, 'a:1');
    await Promise.all([normal.close(), pub.close()]);
  });

  it('a new client can connect and subscribe after the cuts', { timeout: 15000 }, async () => {
    const c = await connect(srv.url);
    assert.deepEqual(await c.request({ type: 'subscribe', channel: 'firehose', id: 9 }), { type: 'ack', id: 9 });
    await c.close();
  });
});
