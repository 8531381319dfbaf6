// A Node.js `ws` echo server for a ferrule client, for tests/tests/interop_node.rs.
//
// Usage (run from a directory whose node_modules holds the pinned `ws`, as for client.mjs):
//
//     node server.mjs [EXPECTED_CLOSE_CODE] [deflate [S C]]
//
// (default 1000; deflate: accept permessage-deflate, compressing every message, with
// serverMaxWindowBits S and clientMaxWindowBits C when given). With deflate, prints
// `extensions=...` when the connection opens: the permessage-deflate parameters agreed, in the
// order ferrule displays them, or nothing.
//
// Listens on 127.0.0.1 on an ephemeral port and prints `port=N` on stdout once it listens. Serves
// one connection: prints `message=<text|binary> <bytes>` for every message and `ping=<payload>`
// for every ping it receives, and echoes every message, except three commands sent as text:
//
//     please-fragment   answers with fragmented text "fragmented ✓ from node" (a fragment boundary
//                       inside a multi-byte character) and fragmented binary 0..=255 three times
//     please-ping       pings the client, waits for its pong, answers "pong received"
//     please-close      closes the connection with 4000 "bye from node"
//
// When that connection ends, prints `close=CODE reason=REASON` (what the client's close frame
// said; 1005 when it had no code, 1006 when none arrived) and `clean=<both close frames
// exchanged>`, and exits: 0 when the close was clean with EXPECTED_CLOSE_CODE, 1 otherwise (the
// reason on stderr), 3 when the script ran out of time.

import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

// `ws` is resolved from the working directory, not from this file's directory (see client.mjs).
const require = createRequire(pathToFileURL(path.join(process.cwd(), 'resolve-from-here.js')));
const { WebSocketServer } = require('ws');
const WS_VERSION = require('ws/package.json').version;

const OVERALL_TIMEOUT = 180_000;
const STEP_TIMEOUT = 60_000;
const MAX_SIZE = 16 * 1024 * 1024;

const FRAGMENTED_TEXT = Buffer.from('fragmented ✓ from node');
const FRAGMENTED_BINARY = Buffer.concat(Array(3).fill(Buffer.from([...Array(256).keys()])));

function print(line) {
  process.stdout.write(`${line}\n`);
}

function handle(ws) {
  ws.on('ping', (data) => print(`ping=${data.toString()}`));
  ws.on('message', (data, isBinary) => {
    print(`message=${isBinary ? 'binary' : 'text'} ${data.length}`);
    const command = isBinary ? null : data.toString('utf8');
    if (command === 'please-fragment') {
      const cut = FRAGMENTED_TEXT.indexOf('✓') + 1; // inside the 3-byte character
      ws.send(FRAGMENTED_TEXT.subarray(0, cut), { binary: false, fin: false });
      ws.send(FRAGMENTED_TEXT.subarray(cut), { binary: false, fin: true });
      ws.send(FRAGMENTED_BINARY.subarray(0, 1), { binary: true, fin: false });
      ws.send(FRAGMENTED_BINARY.subarray(1, 500), { binary: true, fin: false });
      ws.send(FRAGMENTED_BINARY.subarray(500), { binary: true, fin: true });
    } else if (command === 'please-ping') {
      const payload = Buffer.from('server-ping');
      const timer = setTimeout(() => {
        process.stderr.write('MISMATCH: no pong to the server ping\n');
        process.exit(1);
      }, STEP_TIMEOUT);
      const onPong = (pong) => {
        if (pong.equals(payload)) {
          clearTimeout(timer);
          ws.off('pong', onPong);
          ws.send('pong received');
        }
      };
      ws.on('pong', onPong);
      ws.ping(payload);
    } else if (command === 'please-close') {
      ws.close(4000, 'bye from node');
    } else {
      ws.send(data, { binary: isBinary });
    }
  });
}

// The agreed permessage-deflate parameters, as client.mjs prints them.
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

function main(expected, deflateArgs) {
  let perMessageDeflate = false;
  if (deflateArgs[0] === 'deflate') {
    perMessageDeflate = { threshold: 0 };
    if (deflateArgs[1] !== undefined) perMessageDeflate.serverMaxWindowBits = Number(deflateArgs[1]);
    if (deflateArgs[2] !== undefined) perMessageDeflate.clientMaxWindowBits = Number(deflateArgs[2]);
  }
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate, maxPayload: MAX_SIZE });
  wss.on('error', (e) => {
    process.stderr.write(`ERROR: ${e.stack ?? e}\n`);
    process.exit(1);
  });
  wss.on('listening', () => print(`port=${wss.address().port}`));
  wss.once('connection', (ws) => {
    if (perMessageDeflate) print(`extensions=${agreedDeflate(ws)}`);
    ws.on('error', (e) => process.stderr.write(`connection error: ${e.message}\n`));
    ws.addEventListener('close', (e) => {
      print(`close=${e.code} reason=${e.reason}`);
      print(`clean=${e.wasClean}`);
      wss.close();
      if (e.code !== expected || !e.wasClean) {
        const got = `${e.code} ${JSON.stringify(e.reason)}, clean=${e.wasClean}`;
        process.stderr.write(`MISMATCH: the client's close was ${got}; expected a clean ${expected}\n`);
        process.exit(1);
      }
      process.exit(0);
    });
    handle(ws);
  });
}

const deadline = setTimeout(() => {
  process.stderr.write(`TIMEOUT: server.mjs ran over ${OVERALL_TIMEOUT} ms\n`);
  process.exit(3);
}, OVERALL_TIMEOUT);
deadline.unref();

process.stderr.write(`ws ${WS_VERSION}\n`);
main(process.argv.length > 2 ? Number(process.argv[2]) : 1000, process.argv.slice(3));
