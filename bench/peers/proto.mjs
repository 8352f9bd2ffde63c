// Protocol v1 core (docs/protocol.md) shared by the reference servers of
// bench/compare.sh: command parsing and validation with realtimed's error
// codes, the frames they send, and their command line. Runs under Node and Bun.
//
// Left out on purpose (the benchmark never sends them): auth, presence, live
// queries, rate limits, size limits, keep-alive pings, and the duplicate-key
// check (JSON.parse keeps the last value). `data` is parsed and serialised
// again (JSON.stringify), as the original package did, instead of being
// relayed byte for byte: the same bytes for the load generator's payloads.

// 1 to 255 bytes of A-Z a-z 0-9 _ - : . @ /, not starting with "/", and no
// ".." segment between "/" or ":" separators (docs/protocol.md, Channel names).
const CHANNEL_CHARS = /^[A-Za-z0-9_\-:.@/]{1,255}$/;
const DOTDOT_SEGMENT = /(^|[/:])\.\.($|[/:])/;

export function validChannel(name) {
  return CHANNEL_CHARS.test(name) && name[0] !== '/' && !DOTDOT_SEGMENT.test(name);
}

export function errorFrame(id, code, message) {
  return JSON.stringify({ type: 'error', id, code, message });
}

// The ack; `id` and `delivered` are left out when undefined, like realtimed's.
export function ackFrame(id, delivered) {
  return JSON.stringify({ type: 'ack', id, delivered });
}

// The push every subscriber gets: {"type":"message","channel":...,"data":...},
// the member order realtimed sends (rt_loadgen's fast path reads it).
export function messageFrame(channel, data) {
  return JSON.stringify({ type: 'message', channel, data });
}

const COMMANDS = new Set(['subscribe', 'unsubscribe', 'publish']);

// Parses one text message into {type, channel, id, data}, or returns
// {error: frame} with the code realtimed would send: invalid_json,
// unknown_type, missing_field, invalid_field, invalid_channel.
export function parseCommand(text) {
  let cmd;
  try {
    cmd = JSON.parse(text);
  } catch (e) {
    return { error: errorFrame(undefined, 'invalid_json', `Invalid JSON: ${e.message}`) };
  }
  if (cmd === null || typeof cmd !== 'object' || Array.isArray(cmd)) {
    return { error: errorFrame(undefined, 'invalid_json', 'Invalid JSON: not an object') };
  }
  const { id, type, channel } = cmd;
  if (id !== undefined && !Number.isInteger(id)) {
    return { error: errorFrame(undefined, 'invalid_field', 'Field "id" must be an integer') };
  }
  if (type === undefined) return { error: errorFrame(id, 'missing_field', 'Missing field "type"') };
  if (typeof type !== 'string') {
    return { error: errorFrame(id, 'invalid_field', 'Field "type" must be a string') };
  }
  if (!COMMANDS.has(type)) {
    return { error: errorFrame(id, 'unknown_type', `Unknown message type "${type}"`) };
  }
  if (channel === undefined) {
    return { error: errorFrame(id, 'missing_field', 'Missing field "channel"') };
  }
  if (typeof channel !== 'string') {
    return { error: errorFrame(id, 'invalid_field', 'Field "channel" must be a string') };
  }
  if (!validChannel(channel)) {
    return { error: errorFrame(id, 'invalid_channel', 'Invalid channel name format') };
  }
  if (type === 'publish' && !Object.hasOwn(cmd, 'data')) {
    return { error: errorFrame(id, 'missing_field', 'Missing field "data"') };
  }
  return { type, channel, id, data: cmd.data };
}

// --host HOST and --port PORT (or --host=HOST, --port=PORT); port 0 picks a
// free one. Anything else is a usage error (exit 2).
export function parseArgs(argv, name) {
  const opts = { host: '127.0.0.1', port: 8080 };
  for (let i = 0; i < argv.length; i++) {
    const m = /^--(host|port)(?:=(.*))?$/.exec(argv[i]);
    const value = m && (m[2] !== undefined ? m[2] : argv[++i]);
    if (!m || value === undefined || value === '') {
      console.error(`usage: ${name} [--host HOST] [--port PORT]`);
      process.exit(2);
    }
    opts[m[1]] = value;
  }
  opts.port = Number(opts.port);
  if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) {
    console.error(`${name}: bad port`);
    process.exit(2);
  }
  return opts;
}

// The subprotocol realtimed selects when offered; no other is ever echoed.
export const SUBPROTOCOL = 'realtime.v1';
export const PATH = '/ws';
