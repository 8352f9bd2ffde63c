// Message validation (issue #3, section 4) end to end: published data with
// script/HTML injection is refused with invalid_message naming the reason
// (escaped forms and object keys included) and the connection keeps working;
// innocent text is delivered byte for byte; validation.xss false delivers
// everything unchanged; the nesting-depth and size limits.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { cleanup, connect, rawMember } from '../helpers/server.mjs';
import { assertErrorReply, startServers } from '../helpers/auth.mjs';

const T = { timeout: 20000 };
const MAX_DEPTH = 8;
const MAX_PUBLISH = 1024;

let strict; // validation.xss default (true), maxJsonDepth 8, maxPublishSize 1024
let lax;    // validation.xss false

before(async () => {
  [strict, lax] = await startServers([
    { config: { maxJsonDepth: MAX_DEPTH, maxPublishSize: MAX_PUBLISH } },
    { config: { validation: { xss: false } } },
  ]);
}, { timeout: 30000 });

after(async () => {
  cleanup();
  const results = await Promise.allSettled([strict?.stop(), lax?.stop()]);
  for (const r of results) if (r.status === 'rejected') throw r.reason;
}, { timeout: 30000 });

/**
 * Injection payloads: [label, data as JSON source text, pattern the refusal
 * message must match]. The text is sent exactly as written, so JSON escapes
 * such as \u003c reach the server undecoded.
 */
const HOSTILE = [
  ['<script> tag', '"<script>alert(1)</script>"', /script/i],
  ['closing </script> only', '"x</script>"', /script/i],
  ['upper-case <SCRIPT', '"<SCRIPT SRC=//evil.example/x.js>"', /script/i],
  ['\\u003cscript> (escaped in JSON)', '"\\u003cscript>alert(1)\\u003c/script>"', /script/i],
  ['\\u003C\\u0073cript> (every escape)', '"\\u003C\\u0073\\u0063ript>"', /script/i],
  ['javascript: URL', '{"href":"javascript:alert(1)"}', /javascript/i],
  ['JaVaScRiPt: URL', '{"href":"JaVaScRiPt:alert(1)"}', /javascript/i],
  ['java<TAB>script: URL', '{"href":"java\\tscript:alert(1)"}', /javascript/i],
  ['<img src=x onerror=alert(1)>', '"<img src=x onerror=alert(1)>"', /onerror|handler/i],
  ['onload = with spaces', '"<body onload = alert(1)>"', /onload|handler/i],
  ['in an object key', '{"<script>alert(1)</script>":1}', /script/i],
  ['deep in an array', '{"a":[1,{"b":["ok","<script>x</script>"]}]}', /script/i],
  ['<iframe', '"<iframe src=\\"https://evil.example\\"></iframe>"', /iframe/i],
  ['vbscript: URL', '"vbscript:msgbox(1)"', /vbscript/i],
  ['data:text/html URL', '"data:text/html;base64,PHNjcmlwdD4="', /data:|html/i],
];

/** Innocent strings that must arrive unchanged (data as JSON source text). */
const INNOCENT = [
  ['"the onion=good"', 'the onion=good'],
  ['"I <3 scripts"', 'I <3 scripts'],
  ['"javascript is a language"', 'javascript is a language'],
  ['{"note":"a < b and c > d","script":"hello"}', { note: 'a < b and c > d', script: 'hello' }],
  ['"description: scripted tests, one <= two"', 'description: scripted tests, one <= two'],
];

/** A publisher and a subscriber on `channel` of server `srv`. */
async function pair(srv, channel) {
  const [publisher, subscriber] = await Promise.all([connect(srv.url), connect(srv.url)]);
  assert.deepEqual(await subscriber.request({ type: 'subscribe', channel, id: 1 }), { type: 'ack', id: 1 });
  return { publisher, subscriber };
}

/** Publishes `dataText` (raw JSON) and returns the publisher's reply. */
function publishRaw(c, channel, dataText, id) {
  c.sendRaw(`{"type":"publish","channel":"${channel}","data":${dataText},"id":${id}}`);
  return c.next();
}

/** Asserts delivery of `dataText` byte for byte to the subscriber, acked with delivered 1. */
async function assertDelivered(publisher, subscriber, channel, dataText, id, label) {
  assert.deepEqual(await publishRaw(publisher, channel, dataText, id), { type: 'ack', id, delivered: 1 }, label);
  const item = await subscriber.nextItem();
  assert.equal(item.json.type, 'message', label);
  assert.equal(item.json.channel, channel, label);
  assert.equal(rawMember(item.raw, 'data'), dataText, `${label}: data delivered byte for byte`);
}

describe('validation.xss on (default)', () => {
  it('refuses each injection with invalid_message naming the reason; nothing is delivered', T, async () => {
    const { publisher, subscriber } = await pair(strict, 'xss');
    let id = 10;
    for (const [label, dataText, reason] of HOSTILE) {
      id += 1;
      const reply = await publishRaw(publisher, 'xss', dataText, id);
      assertErrorReply(reply, 'invalid_message', id);
      assert.deepEqual(Object.keys(reply).sort(), ['code', 'id', 'message', 'type'], label);
      assert.match(reply.message, /^Message refused: /, `${label}: ${reply.message}`);
      assert.match(reply.message, reason, `${label}: the message names the reason: ${reply.message}`);
    }
    await subscriber.expectNothing(300);
    assert.equal(publisher.closeInfo, null, 'the connection stays open');
    await assertDelivered(publisher, subscriber, 'xss', '{"after":"refusals"}', 99, 'still works');
    await Promise.all([publisher.close(), subscriber.close()]);
  });

  it('innocent text is delivered unchanged', T, async () => {
    const { publisher, subscriber } = await pair(strict, 'innocent');
    let id = 20;
    for (const [dataText, value] of INNOCENT) {
      id += 1;
      await assertDelivered(publisher, subscriber, 'innocent', dataText, id, dataText);
    }
    assert.deepEqual(INNOCENT.map(([text]) => JSON.parse(text)), INNOCENT.map(([, v]) => v));
    await Promise.all([publisher.close(), subscriber.close()]);
  });

  it('a refused publish between two good ones does not disturb the order', T, async () => {
    const { publisher, subscriber } = await pair(strict, 'order');
    await assertDelivered(publisher, subscriber, 'order', '"one"', 31, 'first');
    assertErrorReply(await publishRaw(publisher, 'order', '"<script>"', 32), 'invalid_message', 32);
    await assertDelivered(publisher, subscriber, 'order', '"two"', 33, 'second');
    await Promise.all([publisher.close(), subscriber.close()]);
  });
});

describe('validation.xss false', () => {
  it('delivers the same data unchanged, escapes included', T, async () => {
    const { publisher, subscriber } = await pair(lax, 'raw');
    let id = 40;
    for (const [label, dataText] of HOSTILE) {
      id += 1;
      await assertDelivered(publisher, subscriber, 'raw', dataText, id, label);
    }
    await Promise.all([publisher.close(), subscriber.close()]);
  });
});

describe('structure limits (maxJsonDepth 8, maxPublishSize 1024)', () => {
  it('data nested deeper than maxJsonDepth gets nesting_too_deep; shallow data passes', T, async () => {
    const { publisher, subscriber } = await pair(strict, 'deep');
    const deep = `${'['.repeat(MAX_DEPTH * 3)}${']'.repeat(MAX_DEPTH * 3)}`;
    assertErrorReply(await publishRaw(publisher, 'deep', deep, 51), 'nesting_too_deep', 51);
    const deepObj = `${'{"a":'.repeat(MAX_DEPTH + 4)}1${'}'.repeat(MAX_DEPTH + 4)}`;
    assertErrorReply(await publishRaw(publisher, 'deep', deepObj, 52), 'nesting_too_deep', 52);
    await subscriber.expectNothing(200);
    await assertDelivered(publisher, subscriber, 'deep', '[[["ok"]]]', 53, 'depth 3');
    await Promise.all([publisher.close(), subscriber.close()]);
  });

  it('an oversize publish gets message_too_large and is not delivered', T, async () => {
    const { publisher, subscriber } = await pair(strict, 'big');
    const big = `"${'a'.repeat(MAX_PUBLISH * 2)}"`;
    assertErrorReply(await publishRaw(publisher, 'big', big, 61), 'message_too_large', 61);
    const bigHostile = `"<script>${'a'.repeat(MAX_PUBLISH * 2)}"`;
    const reply = await publishRaw(publisher, 'big', bigHostile, 62);
    assert.equal(reply.type, 'error');
    assert.ok(['message_too_large', 'invalid_message'].includes(reply.code), JSON.stringify(reply));
    await subscriber.expectNothing(200);
    await assertDelivered(publisher, subscriber, 'big', `"${'b'.repeat(MAX_PUBLISH - 2)}"`, 63, 'exactly the limit');
    await Promise.all([publisher.close(), subscriber.close()]);
  });
});
