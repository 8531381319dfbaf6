// The hub's JavaScript client (api/src/hub/client/ferrule-hub.js) under Node's test runner,
// against a ferrule hub that tests/tests/interop_node.rs starts (its address in FERRULE_HUB_URL),
// with the `ws` package as the WebSocket (Node 20 has no global one). Run from the `ws` install
// directory, so that `ws` resolves there; FERRULE_HUB_CLIENT is the client module's path.
//
// The hub's events (see hub_js_client in interop_node.rs): "echo" emits "echo" back; "add"
// replies a + b; "fail" fails (a $nack); "ask" asks this client "question" with an ack and emits
// the outcome as "answer"; "kick" disconnects this connection with 4000; native messages come back.

import { after, test } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";

const require = createRequire(`${process.cwd()}/`);
const { WebSocket, WebSocketServer } = require("ws");
const { connect, AckError, PROTOCOL_VERSION } = await import(pathToFileURL(process.env.FERRULE_HUB_CLIENT).href);
const url = process.env.FERRULE_HUB_URL;

// Every client and stand-in server made, closed at the end even when a test failed midway, so
// that the process exits.
const clients = [];
const servers = [];
after(() => {
  clients.forEach((client) => client.close());
  servers.forEach((server) => server.close());
});
const connectTo = (address, options) => {
  const client = connect(address, { WebSocket, ...options });
  clients.push(client);
  return client;
};

/** The next `event` of `client`, as a Promise. */
const next = (client, event) => new Promise((resolve) => client.once(event, resolve));

/** A connected client, and a list of the "$error"s it reports. */
async function open(options = {}) {
  const client = connectTo(url, options);
  const errors = [];
  client.on("$error", (error) => errors.push(error));
  await next(client, "$open");
  return { client, errors };
}

test("$open gives the connection id and version 1", async () => {
  const client = connectTo(url);
  assert.equal(client.connected, false);
  const opened = await next(client, "$open");
  assert.equal(PROTOCOL_VERSION, 1);
  assert.match(opened.id, /^[0-9a-f]{32}$/);
  assert.equal(opened.reconnected, false);
  assert.equal(client.id, opened.id);
  assert.equal(client.connected, true);
  client.close();
});

test("emit before $open is queued and sent once greeted; on receives the reply", async () => {
  const client = connectTo(url);
  client.emit("echo", { text: "queued ✓", n: [1, 2] });
  const echoed = await next(client, "echo");
  assert.deepEqual(echoed, { text: "queued ✓", n: [1, 2] });
  client.close();
});

test("the queue before $open is bounded by maxQueued", async () => {
  const client = connectTo(url, { maxQueued: 2 });
  client.emit("echo", 1).emit("echo", 2);
  assert.throws(() => client.emit("echo", 3), /2 messages already wait/);
  await assert.rejects(client.emitWithAck("add", [1, 1]), /2 messages already wait/);
  const seen = [];
  client.on("echo", (n) => seen.push(n));
  await next(client, "$open");
  assert.equal(await client.emitWithAck("add", [1, 1]), 2);
  assert.deepEqual(seen, [1, 2]);
  client.close();
});

test("off removes a callback, once fires once", async () => {
  const { client } = await open();
  const seen = [];
  const callback = (payload) => seen.push(payload);
  client.on("echo", callback);
  client.emit("echo", 1);
  await next(client, "echo");
  client.off("echo", callback);
  client.emit("echo", 2);
  await next(client, "echo");
  assert.deepEqual(seen, [1]);
  client.close();
});

test("emitWithAck resolves with the server's reply", async () => {
  const { client } = await open();
  assert.equal(await client.emitWithAck("add", [2, 40]), 42);
  const replies = await Promise.all([client.emitWithAck("add", [1, 1]), client.emitWithAck("add", [5, 5])]);
  assert.deepEqual(replies, [2, 10]);
  client.close();
});

test("emitWithAck rejects with a nack: a failing handler, an unknown event, a bad payload", async () => {
  const { client } = await open();
  await assert.rejects(client.emitWithAck("fail", "x"), (e) => e instanceof AckError && e.reason === "nack" && /refused on purpose/.test(e.message));
  await assert.rejects(client.emitWithAck("nobody-handles-this", 1), { name: "AckError", reason: "nack" });
  await assert.rejects(client.emitWithAck("add", "not a pair"), { name: "AckError", reason: "nack" });
  // The connection stays.
  assert.equal(await client.emitWithAck("add", [1, 2]), 3);
  client.close();
});

test("emitWithAck rejects on timeout, and the late reply is ignored", async (t) => {
  const { client, errors } = await open();
  // Timers under the test's control: the deadline passes before any reply can be read.
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const late = client.emitWithAck("add", [1, 2], { timeout: 1000 });
  t.mock.timers.tick(1000);
  t.mock.timers.reset();
  await assert.rejects(late, { name: "AckError", reason: "timeout" });
  // The late $ack arrives before this one's: it is dropped, not mistaken for another reply.
  assert.equal(await client.emitWithAck("add", [20, 3]), 23);
  assert.deepEqual(errors, []);
  client.close();
});

test("close rejects pending acks with closed, and later emits throw", async () => {
  const { client } = await open();
  const pending = client.emitWithAck("add", [1, 2]);
  const closed = next(client, "$close");
  client.close(1000, "bye");
  await assert.rejects(pending, { name: "AckError", reason: "closed" });
  const info = await closed;
  assert.equal(info.code, 1000);
  assert.equal(info.reconnecting, false);
  assert.throws(() => client.emit("echo", 1), /closed/);
});

test("the server's ack requests are answered by a handler's value or Promise", async () => {
  const { client } = await open();
  client.on("question", (q) => q * 2);
  client.emit("ask", 21);
  assert.deepEqual(await next(client, "answer"), { reply: 42 });
  client.off("question");
  client.on("question", async (q) => ({ doubled: q * 2 }));
  client.emit("ask", 4);
  assert.deepEqual(await next(client, "answer"), { reply: { doubled: 8 } });
  client.close();
});

test("a handler that throws, or no handler, answers the server with a nack", async () => {
  const { client, errors } = await open();
  client.on("question", () => {
    throw new Error("cannot answer");
  });
  client.emit("ask", 1);
  assert.deepEqual(await next(client, "answer"), { error: "refused" });
  assert.equal(errors.length, 1);
  assert.match(errors[0].message, /cannot answer/);
  client.off("question");
  client.emit("ask", 2);
  assert.deepEqual(await next(client, "answer"), { error: "refused" });
  client.close();
});

test("native text and binary go through untouched, queued until $open", async () => {
  const client = connectTo(url);
  client.send(new Uint8Array([7, 7]));
  assert.deepEqual([...new Uint8Array(await next(client, "$native"))], [7, 7]);
  client.send("plain text, not an event");
  assert.equal(await next(client, "$native"), "plain text, not an event");
  client.send(new Uint8Array([0, 1, 2, 255]));
  const binary = await next(client, "$native");
  assert.ok(binary instanceof ArrayBuffer);
  assert.deepEqual([...new Uint8Array(binary)], [0, 1, 2, 255]);
  assert.throws(() => client.send('["looks like", "an event"]'), TypeError);
  client.close();
});

test("reserved and bad event names are refused before sending", async () => {
  const { client } = await open();
  assert.throws(() => client.emit("$open", {}), TypeError);
  await assert.rejects(client.emitWithAck(42, {}), TypeError);
  await assert.rejects(client.emitWithAck("$ack", {}), TypeError);
  // Nothing was sent: the next ack id is still answered in order.
  assert.equal(await client.emitWithAck("add", [1, 1]), 2);
  client.close();
});

test("reconnects with backoff after the server closes, and says so", async () => {
  const client = connectTo(url, { reconnect: { initialDelay: 20, maxDelay: 200 } });
  const first = await next(client, "$open");
  const closed = next(client, "$close");
  const reconnecting = next(client, "$reconnecting");
  const reconnected = next(client, "$reconnect");
  client.emit("kick");
  const info = await closed;
  assert.equal(info.code, 4000);
  assert.equal(info.reconnecting, true);
  const attempt = await reconnecting;
  assert.equal(attempt.attempt, 1);
  assert.ok(attempt.delay >= 10 && attempt.delay <= 20, `delay ${attempt.delay}: 20 ms less up to half of it`);
  const again = await reconnected;
  assert.notEqual(again.id, first.id);
  assert.equal(client.id, again.id);
  // The new connection works.
  assert.equal(await client.emitWithAck("add", [3, 4]), 7);
  client.close();
});

test("without reconnect, a server close ends the client", async () => {
  const { client } = await open();
  const closed = next(client, "$close");
  client.emit("kick");
  const info = await closed;
  assert.equal(info.reconnecting, false);
  assert.equal(client.connected, false);
});

/** A `ws` server on a free port that sends `messages` to each connection. */
async function fakeHub(messages) {
  const server = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  servers.push(server);
  await new Promise((resolve) => server.once("listening", resolve));
  server.on("connection", (ws) => messages.forEach((m) => ws.send(m)));
  return { server, url: `ws://127.0.0.1:${server.address().port}/` };
}

test("a hub speaking another version is refused, and no reconnection follows", async () => {
  const fake = await fakeHub(['["$open",{"v":2,"id":"x"}]']);
  const client = connectTo(fake.url, { reconnect: { initialDelay: 10 } });
  const error = next(client, "$error");
  const closed = next(client, "$close");
  assert.match((await error).message, /version 2/);
  assert.equal((await closed).reconnecting, false);
  assert.equal(client.connected, false);
  fake.server.close();
});

test("malformed hub messages go to $error and the connection stays", async () => {
  const fake = await fakeHub([
    '["$open",{"v":1,"id":"abc"}]',
    "[not json",
    '{"an": "object"}',
    "[1, 2]",
    '["ev", 1, "not an id"]',
    '["$future", 1]',
    '["ev", "fine"]',
  ]);
  const client = connectTo(fake.url);
  const errors = [];
  client.on("$error", (e) => errors.push(e.message));
  const natives = [];
  client.on("$native", (data) => natives.push(data));
  const ev = next(client, "ev");
  assert.equal(await ev, "fine");
  // `{...}` is not a hub message (it does not start with `[`): it is native.
  assert.deepEqual(natives, ['{"an": "object"}']);
  assert.equal(errors.length, 3, errors.join("; "));
  assert.equal(client.id, "abc");
  client.close();
  fake.server.close();
});
