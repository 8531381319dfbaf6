// A Node.js `ws` client driving a ferrule server, for tests/tests/interop_node.rs.
//
// Usage (run from a directory whose node_modules holds the pinned `ws`: `npm ci` beside
// package.json, or the install directory the Rust tests make under CARGO_TARGET_TMPDIR):
//
//     node client.mjs version                exit 0; prints ws=<version> and ws_path=<resolved file>
//     node client.mjs echo URL               exchange and check echoes, ping, close 1000; prints messages=N
//     node client.mjs echo-deflate URL [S C] the same with permessage-deflate offered (asking for server and
//                                            client max window bits S and C when given); prints extensions=...
//     node client.mjs subprotocol URL P,Q    offer subprotocols P, Q; prints subprotocol=<negotiated, empty for
//                                            none> or error=<why ws failed the handshake>
//     node client.mjs origin URL ORIGIN      connect with this Origin; prints status=<HTTP status> or open
//     node client.mjs wait-close URL         wait for the server to close; prints close=CODE reason=REASON, clean=
//     node client.mjs oversize URL N         send N bytes of binary, wait for the close; prints close=..., clean=
//     node client.mjs invalid-utf8 URL       send a text frame that is not UTF-8, wait for the close; prints close=...
//     node client.mjs deflate URL            offer permessage-deflate; prints extensions=..., checks an echo,
//                                            closes 1000
//     node client.mjs fragments URL          send "please-fragment", read the two messages the server streams back;
//                                            prints frames=<the frames on the wire>, text=..., binary=<hex>,
//                                            closes 1000
//
// Exit status: 0 when every check passed, 1 on a mismatch or an error (the reason on stderr), 2 on
// misuse, 3 when the script ran out of time.

import { createRequire } from 'node:module';
import net from 'node:net';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

// `ws` is resolved from the working directory, not from this file's directory: the scripts live
// in the repository, the pinned `ws` is installed elsewhere.
const require = createRequire(pathToFileURL(path.join(process.cwd(), 'resolve-from-here.js')));
const WebSocket = require('ws');
const WS_VERSION = require('ws/package.json').version;

// Fail rather than hang: the Rust side also kills this process after its own timeout.
const OVERALL_TIMEOUT = 180_000;
const STEP_TIMEOUT = 60_000;
const LARGE = 4 * 1024 * 1024;
const MAX_SIZE = 16 * 1024 * 1024;

class Mismatch extends Error {}

function print(line) {
  process.stdout.write(`${line}\n`);
}

function options(extra = {}) {
  // perMessageDeflate: false keeps frames as sent (ferrule declines permessage-deflate anyway).
  return { perMessageDeflate: false, maxPayload: MAX_SIZE, handshakeTimeout: STEP_TIMEOUT, ...extra };
}

function describe(data) {
  if (Array.isArray(data)) return `${data.length} fragments: [${data.map(describe).join(', ')}]`;
  if (typeof data === 'string') return `text of ${data.length} chars: ${JSON.stringify(data.slice(0, 40))}...`;
  return `binary of ${data.length} bytes: ${data.subarray(0, 40).toString('hex')}...`;
}

function withTimeout(promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Mismatch(`${what}: nothing within ${STEP_TIMEOUT} ms`)), STEP_TIMEOUT);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * A `ws` client with its events turned into awaitable values: messages in arrival order, pongs,
 * the close (code, reason, and whether both close frames were exchanged) and errors.
 */
class Client {
  constructor(url, protocols, opts) {
    this.ws = new WebSocket(url, protocols, opts);
    this.messages = [];
    this.waiting = null;
    this.errors = [];
    this.ws.on('error', (e) => this.errors.push(e));
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', resolve);
      this.ws.once('error', reject);
    });
    // Handled where awaited; an error after the open must not count as an unhandled rejection.
    this.opened.catch(() => {});
    this.closed = new Promise((resolve) => {
      this.ws.addEventListener('close', (e) => resolve({ code: e.code, reason: e.reason, wasClean: e.wasClean }));
    });
    this.ws.on('message', (data, isBinary) => {
      this.messages.push(isBinary ? data : data.toString('utf8'));
      if (this.waiting) this.waiting();
    });
    this.ws.on('close', () => {
      if (this.waiting) this.waiting();
    });
  }

  async open() {
    await withTimeout(this.opened, 'opening handshake');
  }

  /** The next message: a string for text, a Buffer for binary. */
  async recv() {
    while (this.messages.length === 0) {
      if (this.ws.readyState === WebSocket.CLOSED) {
        throw new Mismatch(`the connection closed while waiting for a message (errors: ${this.errors.join('; ')})`);
      }
      await withTimeout(new Promise((resolve) => (this.waiting = resolve)), 'waiting for a message');
      this.waiting = null;
    }
    return this.messages.shift();
  }

  async expectEcho(sent, expected) {
    const got = await this.recv();
    const same =
      typeof got === typeof expected &&
      (typeof got === 'string' ? got === expected : Buffer.isBuffer(got) && got.equals(expected));
    if (!same) {
      throw new Mismatch(`sent ${describe(sent)}\n  expected echo ${describe(expected)}\n  got ${describe(got)}`);
    }
  }

  async ping(payload) {
    const pong = new Promise((resolve) => {
      const onPong = (data) => {
        if (data.equals(payload)) {
          this.ws.off('pong', onPong);
          resolve();
        }
      };
      this.ws.on('pong', onPong);
    });
    this.ws.ping(payload);
    await withTimeout(pong, `waiting for the pong to ${JSON.stringify(payload.toString())}`);
  }

  /** Closes with `code` and `reason`; the close the server answered with. */
  async close(code, reason) {
    this.ws.close(code, reason);
    return await this.waitClosed();
  }

  async waitClosed() {
    return await withTimeout(this.closed, 'waiting for the close');
  }
}

function printClose(closed) {
  print(`close=${closed.code} reason=${closed.reason}`);
  print(`clean=${closed.wasClean}`);
}

async function checkedClose(client, reason) {
  const closed = await client.close(1000, reason);
  if (closed.code !== 1000 || !closed.wasClean) {
    throw new Mismatch(`the server answered the close with ${JSON.stringify(closed)}`);
  }
}

// The agreed permessage-deflate parameters, in the order ferrule's DeflateParams displays them,
// e.g. "permessage-deflate; server_max_window_bits=12"; empty when none was agreed.
function agreedDeflate(ws) {
  const deflate = ws._extensions['permessage-deflate'];
  if (!deflate) return '';
  const p = deflate.params;
  const out = ['permessage-deflate'];
  if (p.server_no_context_takeover) out.push('server_no_context_takeover');
  if (p.client_no_context_takeover) out.push('client_no_context_takeover');
  const bits = (v) => (typeof v === 'number' ? v : 15);
  if (bits(p.server_max_window_bits) < 15) out.push(`server_max_window_bits=${p.server_max_window_bits}`);
  if (bits(p.client_max_window_bits) < 15) out.push(`client_max_window_bits=${p.client_max_window_bits}`);
  return out.join('; ');
}

async function echo(url, deflate = false) {
  const client = new Client(url, [], options(deflate ? { perMessageDeflate: deflate } : {}));
  await client.open();
  print(`extensions=${agreedDeflate(client.ws)}`);
  let sent = 0;

  // Whole messages: text (multi-byte UTF-8 included), binary, empty ones.
  const whole = ['hello, ferrule', 'grüße ✓ 🦀', '', Buffer.from([0, 1, 2, 0xff, 0xfe]), Buffer.alloc(0)];
  for (const message of whole) {
    client.ws.send(message);
    sent += 1;
    await client.expectEcho(message, message);
  }

  // Fragmented text: three string fragments, then a final empty continuation frame.
  const fragments = ['frag', 'mented ', 'text ✓'];
  for (const fragment of fragments) client.ws.send(fragment, { fin: false });
  client.ws.send('', { fin: true });
  sent += 1;
  await client.expectEcho(fragments, fragments.join(''));

  // Fragmented text whose fragments split multi-byte UTF-8 characters (Buffers sent as text).
  const encoded = Buffer.from('é✓🦀 split across frames');
  const chunks = [encoded.subarray(0, 1), encoded.subarray(1, 4), encoded.subarray(4, 6), encoded.subarray(6)];
  chunks.forEach((chunk, i) => client.ws.send(chunk, { binary: false, fin: i === chunks.length - 1 }));
  sent += 1;
  await client.expectEcho(chunks, encoded.toString('utf8'));

  // Fragmented binary, with an empty fragment in the middle.
  const ramp = Buffer.from([...Array(256).keys()]);
  const parts = [Buffer.alloc(10), Buffer.alloc(0), Buffer.concat(Array(100).fill(ramp)), Buffer.from([0xff])];
  parts.forEach((part, i) => client.ws.send(part, { binary: true, fin: i === parts.length - 1 }));
  sent += 1;
  await client.expectEcho(parts, Buffer.concat(parts));

  // Large messages: 4 MiB of binary and about 4 MiB of text, checked byte for byte.
  const bigBinary = Buffer.alloc(LARGE);
  for (let i = 0; i < LARGE; i++) bigBinary[i] = i % 251;
  client.ws.send(bigBinary);
  sent += 1;
  await client.expectEcho(bigBinary, bigBinary);
  const bigText = 'ferrule ✓ '.repeat(Math.floor(LARGE / 12)); // 12 bytes of UTF-8 each: just under 4 MiB
  client.ws.send(bigText);
  sent += 1;
  await client.expectEcho(bigText, bigText);

  // A ping with a payload, answered by a pong with the same payload.
  await client.ping(Buffer.from('interop-ping'));

  // Close 1000 with a reason; the server echoes the close code.
  await checkedClose(client, 'interop done');
  print(`messages=${sent}`);
}

async function subprotocol(url, offered) {
  const client = new Client(url, offered, options());
  try {
    await client.open();
  } catch (e) {
    // ws fails the handshake itself when the server chose none of several offered subprotocols.
    print(`error=${e.message}`);
    return;
  }
  print(`subprotocol=${client.ws.protocol}`);
  await checkedClose(client, 'subprotocol checked');
}

async function origin(url, value) {
  const client = new Client(url, [], options({ origin: value }));
  const refused = new Promise((resolve) => {
    client.ws.on('unexpected-response', (req, res) => {
      res.resume();
      req.destroy();
      resolve(res.statusCode);
    });
  });
  const outcome = await withTimeout(
    Promise.race([refused.then((status) => ({ status })), client.opened.then(() => ({ open: true }))]),
    'opening handshake'
  );
  if (outcome.open) {
    print('open');
    await checkedClose(client, 'origin checked');
  } else {
    print(`status=${outcome.status}`);
  }
}

async function waitClose(url) {
  const client = new Client(url, [], options());
  await client.open();
  print('open');
  printClose(await client.waitClosed());
}

async function violate(url, payload, binary) {
  const client = new Client(url, [], options());
  await client.open();
  // ws does not validate outgoing text: a Buffer sent with binary: false goes out as is.
  client.ws.send(payload, { binary });
  const closed = await client.waitClosed();
  if (client.messages.length > 0) {
    throw new Mismatch(`the server answered with ${describe(client.messages[0])} instead of closing`);
  }
  printClose(closed);
  for (const e of client.errors) process.stderr.write(`ws error: ${e.message}\n`);
}

async function deflate(url) {
  // ws offers permessage-deflate by default: keep its default here.
  const client = new Client(url, [], { maxPayload: MAX_SIZE, handshakeTimeout: STEP_TIMEOUT });
  await client.open();
  print(`extensions=${client.ws.extensions}`);
  const message = 'compress me '.repeat(1000);
  client.ws.send(message);
  await client.expectEcho(message, message);
  await checkedClose(client, 'deflate checked');
}

const OPCODES = { 0: 'CONT', 1: 'TEXT', 2: 'BINARY', 8: 'CLOSE', 9: 'PING', 10: 'PONG' };

/**
 * Reads the frame headers of everything the server sends, from the raw socket (ws has no API to
 * show frames): `NAME` for a frame without FIN, `NAME.fin` with it. Server frames are unmasked.
 */
class FrameTap {
  constructor() {
    this.buffer = Buffer.alloc(0);
    this.inHead = true;
    this.frames = [];
  }

  feed(chunk) {
    this.buffer = Buffer.concat([this.buffer, chunk]);
    if (this.inHead) {
      const end = this.buffer.indexOf('\r\n\r\n');
      if (end < 0) return;
      this.buffer = this.buffer.subarray(end + 4);
      this.inHead = false;
    }
    for (;;) {
      if (this.buffer.length < 2) return;
      const fin = (this.buffer[0] & 0x80) !== 0;
      const opcode = this.buffer[0] & 0x0f;
      let length = this.buffer[1] & 0x7f;
      let header = 2;
      if (length === 126) {
        if (this.buffer.length < 4) return;
        length = this.buffer.readUInt16BE(2);
        header = 4;
      } else if (length === 127) {
        if (this.buffer.length < 10) return;
        length = Number(this.buffer.readBigUInt64BE(2));
        header = 10;
      }
      if ((this.buffer[1] & 0x80) !== 0) header += 4;
      if (this.buffer.length < header + length) return;
      const name = OPCODES[opcode] ?? `OPCODE${opcode}`;
      this.frames.push(fin ? `${name}.fin` : name);
      this.buffer = this.buffer.subarray(header + length);
    }
  }
}

async function fragments(url) {
  const tap = new FrameTap();
  const createConnection = (opts) => {
    const socket = net.connect(opts);
    socket.on('data', (chunk) => tap.feed(chunk));
    return socket;
  };
  const client = new Client(url, [], options({ createConnection }));
  await client.open();
  client.ws.send('please-fragment');
  const text = await client.recv();
  const binary = await client.recv();
  if (typeof text !== 'string' || !Buffer.isBuffer(binary)) {
    throw new Mismatch(`expected a text then a binary message, got ${describe(text)} then ${describe(binary)}`);
  }
  print(`frames=${tap.frames.join(' ')}`);
  print(`text=${text}`);
  print(`binary=${binary.toString('hex')}`);
  await checkedClose(client, 'fragments checked');
}

async function main(argv) {
  const [mode, url, arg, ...rest] = argv;
  if (mode === 'version') {
    print(`ws=${WS_VERSION}`);
    print(`ws_path=${require.resolve('ws')}`);
  } else if (mode === 'echo' && url) {
    await echo(url);
  } else if (mode === 'echo-deflate' && url) {
    // threshold 0: compress every message, the short ones too.
    const deflate = { threshold: 0 };
    if (arg !== undefined) deflate.serverMaxWindowBits = Number(arg);
    if (rest[0] !== undefined) deflate.clientMaxWindowBits = Number(rest[0]);
    await echo(url, deflate);
  } else if (mode === 'subprotocol' && arg !== undefined) {
    await subprotocol(url, arg.split(','));
  } else if (mode === 'origin' && arg !== undefined) {
    await origin(url, arg);
  } else if (mode === 'wait-close' && url) {
    await waitClose(url);
  } else if (mode === 'oversize' && arg !== undefined) {
    await violate(url, Buffer.alloc(Number(arg)), true);
  } else if (mode === 'invalid-utf8' && url) {
    const invalid = Buffer.concat([Buffer.from('valid, then '), Buffer.from([0xff, 0xfe]), Buffer.from(' not')]);
    await violate(url, invalid, false);
  } else if (mode === 'deflate' && url) {
    await deflate(url);
  } else if (mode === 'fragments' && url) {
    await fragments(url);
  } else {
    process.stderr.write('usage: see the head of client.mjs\n');
    return 2;
  }
  return 0;
}

const deadline = setTimeout(() => {
  process.stderr.write(`TIMEOUT: client.mjs ${process.argv.slice(2).join(' ')} ran over ${OVERALL_TIMEOUT} ms\n`);
  process.exit(3);
}, OVERALL_TIMEOUT);
deadline.unref();

process.stderr.write(`ws ${WS_VERSION}\n`);
main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e) => {
    process.stderr.write(e instanceof Mismatch ? `MISMATCH: ${e.message}\n` : `ERROR: ${e.stack ?? e}\n`);
    process.exit(1);
  }
);
