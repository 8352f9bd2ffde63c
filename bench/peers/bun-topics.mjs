// Reference server for bench/compare.sh: protocol v1 core on Bun.serve with
// its native pub/sub (uWebSockets topics): ws.subscribe / ws.unsubscribe, and
// server.publish, which writes each publish once and lets uWebSockets batch
// the pending messages of each subscriber into one write.
//
//   bun bench/peers/bun-topics.mjs --host 127.0.0.1 --port 0
//
// Semantics, matched to realtimed's:
// - server.publish, not ws.publish: ws.publish leaves out the sending socket
//   (unless publishToSelf), while protocol v1 delivers to the publisher too
//   when it is subscribed. server.publish leaves out nobody.
// - "delivered" is server.subscriberCount(topic) taken just before the
//   publish: the sockets server.publish hands the message to.
// - The publisher's own copy comes before its ack: uWebSockets drains a
//   socket's pending topic messages before any direct send on that socket.
// Bun unsubscribes a closed socket from all its topics by itself.
//
// Prints `listening on HOST:PORT` once listening; on SIGTERM or SIGINT
// stops the server (dropping its connections) and exits 0.
import {
  PATH, SUBPROTOCOL, ackFrame, messageFrame, parseArgs, parseCommand,
} from './proto.mjs';

const opts = parseArgs(process.argv.slice(2), 'bun-topics.mjs');

function onMessage(server, ws, raw) {
  if (typeof raw !== 'string') {
    ws.close(1003, 'binary messages are not supported');
    return;
  }
  const cmd = parseCommand(raw);
  if (cmd.error) {
    ws.send(cmd.error);
    return;
  }
  switch (cmd.type) {
    case 'subscribe':
      ws.subscribe(cmd.channel);
      ws.send(ackFrame(cmd.id));
      break;
    case 'unsubscribe':
      ws.unsubscribe(cmd.channel);
      ws.send(ackFrame(cmd.id));
      break;
    default: {
      const delivered = server.subscriberCount(cmd.channel);
      if (delivered > 0) server.publish(cmd.channel, messageFrame(cmd.channel, cmd.data));
      ws.send(ackFrame(cmd.id, delivered));
    }
  }
}

const server = Bun.serve({
  hostname: opts.host,
  port: opts.port,
  fetch(req, srv) {
    if (new URL(req.url).pathname !== PATH) return new Response('Not Found\n', { status: 404 });
    const offered = (req.headers.get('sec-websocket-protocol') || '').split(',').map((s) => s.trim());
    const headers = offered.includes(SUBPROTOCOL) ? { 'Sec-WebSocket-Protocol': SUBPROTOCOL } : {};
    if (srv.upgrade(req, { headers })) return undefined;
    return new Response('Bad Request\n', { status: 400 });
  },
  websocket: {
    perMessageDeflate: false,
    message(ws, raw) {
      onMessage(server, ws, raw);
    },
  },
});

console.log(`listening on ${opts.host}:${server.port}`);

function shutdown() {
  server.stop(true);
  process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
