// Reference server for bench/compare.sh: protocol v1 core on Node + npm `ws`,
// built the way the original package was: a Map of channel -> Set of sockets,
// each publish serialised once and sent to every socket of the set (the
// publisher too when it is subscribed, before its ack).
//
//   node bench/peers/node-ws.mjs --host 127.0.0.1 --port 0
//
// Prints `listening on HOST:PORT` once listening; on SIGTERM or SIGINT
// closes every connection (1001) and exits 0.
import http from 'node:http';
import { WebSocketServer } from 'ws';
import {
  PATH, SUBPROTOCOL, ackFrame, messageFrame, parseArgs, parseCommand,
} from './proto.mjs';

const opts = parseArgs(process.argv.slice(2), 'node-ws.mjs');
const channels = new Map(); // channel name -> Set of sockets subscribed to it

function subscribe(ws, channel) {
  let set = channels.get(channel);
  if (!set) channels.set(channel, (set = new Set()));
  set.add(ws);
  ws.subscriptions.add(channel);
}

function unsubscribe(ws, channel) {
  const set = channels.get(channel);
  if (set && set.delete(ws) && set.size === 0) channels.delete(channel);
  ws.subscriptions.delete(channel);
}

// One encoding per publish: the frame text becomes one Buffer that every
// send reuses (sent as a text frame).
function publish(channel, data) {
  const set = channels.get(channel);
  if (!set) return 0;
  const frame = Buffer.from(messageFrame(channel, data));
  for (const ws of set) ws.send(frame, { binary: false });
  return set.size;
}

function onMessage(ws, raw, isBinary) {
  if (isBinary) {
    ws.close(1003, 'binary messages are not supported');
    return;
  }
  const cmd = parseCommand(raw.toString());
  if (cmd.error) {
    ws.send(cmd.error);
    return;
  }
  switch (cmd.type) {
    case 'subscribe':
      subscribe(ws, cmd.channel);
      ws.send(ackFrame(cmd.id));
      break;
    case 'unsubscribe':
      unsubscribe(ws, cmd.channel);
      ws.send(ackFrame(cmd.id));
      break;
    default:
      ws.send(ackFrame(cmd.id, publish(cmd.channel, cmd.data)));
  }
}

const server = http.createServer((req, res) => {
  res.writeHead(404, { 'Content-Type': 'text/plain' }).end('Not Found\n');
});
const wss = new WebSocketServer({
  server,
  path: PATH,
  perMessageDeflate: false,
  handleProtocols: (protocols) => (protocols.has(SUBPROTOCOL) ? SUBPROTOCOL : false),
});

wss.on('connection', (ws) => {
  ws.subscriptions = new Set();
  ws.on('message', (raw, isBinary) => onMessage(ws, raw, isBinary));
  ws.on('close', () => {
    for (const channel of ws.subscriptions) unsubscribe(ws, channel);
  });
  ws.on('error', () => {});
});

server.listen(opts.port, opts.host, () => {
  console.log(`listening on ${opts.host}:${server.address().port}`);
});

function shutdown() {
  for (const ws of wss.clients) ws.close(1001, 'server shutting down');
  wss.close();
  server.close();
  process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
