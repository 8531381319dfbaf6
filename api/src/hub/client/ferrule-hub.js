// ferrule-hub.js: the browser client of a ferrule hub (wire format version 1, documented in the
// `ferrule::hub` module). An ES module with no dependencies and no build step; the server ships
// it as `ferrule::hub::CLIENT_JS` and its TypeScript declarations as `ferrule::hub::CLIENT_TS`.
//
//   import { connect } from "/ferrule-hub.js";
//   const hub = connect("/ws", { reconnect: true });
//   hub.on("$open", ({ id, reconnected }) => console.log("connected as", id));
//   hub.on("chat", (message) => console.log(message));
//   hub.emit("chat", { room: "lobby", text: "hi" });
//   const sum = await hub.emitWithAck("add", [2, 3], { timeout: 5000 });
//   hub.on("ask", (question) => 42);          // the return value (or a Promise's) is the ack
//
// When the server asks for an acknowledgement, the first callback of the event answers it (its
// value, or its Promise's; a throw or a rejection answers `["$nack", id, message]`), and no
// callback at all answers a `$nack` too. Emits and native messages sent before the hub's
// greeting, or while reconnecting, are queued (up to `maxQueued`, 1000 by default; past it they
// throw) and sent once it greets the new connection.
//
// Events of the client itself are named with a `$`, which the server cannot use for its events:
//   "$open"      { id, reconnected }         the hub greeted this connection (`["$open", ...]`)
//   "$reconnect" { id, attempt }             the same, after a reconnection (after "$open")
//   "$close"     { code, reason, wasClean, reconnecting }   the connection ended
//   "$reconnecting" { attempt, delay }       the next attempt starts in `delay` ms
//   "$native"    data                        a native message: a string, or an ArrayBuffer
//   "$error"     Error                       a malformed message, a handler that threw, a version mismatch

/** The wire format version this client speaks. */
export const PROTOCOL_VERSION = 1;

/** Why an `emitWithAck` got no reply: `reason` is "timeout", "nack" or "closed". */
export class AckError extends Error {
  constructor(reason, message) {
    super(message);
    this.name = "AckError";
    this.reason = reason;
  }
}

const DEFAULT_RECONNECT = { initialDelay: 500, maxDelay: 10000, factor: 2, jitter: 0.5, maxAttempts: Infinity };

/**
 * Opens a connection to the hub at `url` (`ws:`/`wss:`, `http:`/`https:`, or a path resolved
 * against the page's address) and returns its client at once; events emitted before the hub's
 * greeting are queued and sent once it arrives.
 */
export function connect(url, options = {}) {
  return new HubClient(url, options);
}

/** A connection to a hub, reconnecting if asked to. Made by `connect`. */
export class HubClient {
  constructor(url, options = {}) {
    this.url = resolveUrl(url);
    this.id = null;
    this._WebSocket = options.WebSocket ?? globalThis.WebSocket;
    if (typeof this._WebSocket !== "function") {
      throw new TypeError("no WebSocket in this environment: pass one as options.WebSocket");
    }
    this._protocols = options.protocols;
    this._ackTimeout = options.ackTimeout ?? 10000;
    this._maxQueued = options.maxQueued ?? 1000;
    this._reconnect = options.reconnect ? { ...DEFAULT_RECONNECT, ...(options.reconnect === true ? {} : options.reconnect) } : null;
    this._handlers = new Map();
    this._pending = new Map(); // ack id -> { resolve, reject, timer }
    this._nextAck = 1;
    this._queue = []; // messages waiting for "$open"
    this._closed = false; // close() was called, or the hub speaks another version
    this._attempt = 0;
    this._opens = 0;
    this._timer = null;
    this._ws = null;
    this._open();
  }

  /** Whether the hub has greeted the current connection. */
  get connected() {
    return this.id !== null;
  }

  /** Calls `callback(payload)` for each `event`; returns the client. */
  on(event, callback) {
    if (!this._handlers.has(event)) this._handlers.set(event, []);
    this._handlers.get(event).push(callback);
    return this;
  }

  /** Calls `callback` for the next `event` only; returns the client. */
  once(event, callback) {
    const wrapper = (payload) => {
      this.off(event, wrapper);
      return callback(payload);
    };
    return this.on(event, wrapper);
  }

  /** Removes `callback` from `event`, or every callback of `event` when none is given. */
  off(event, callback) {
    const list = this._handlers.get(event);
    if (!list) return this;
    if (callback === undefined) this._handlers.delete(event);
    else {
      const at = list.indexOf(callback);
      if (at >= 0) list.splice(at, 1);
    }
    return this;
  }

  /** Sends the event `["event", payload]`. */
  emit(event, payload = null) {
    this._send(JSON.stringify([checkName(event), payload]));
    return this;
  }

  /**
   * Sends `["event", payload, id]` and resolves with the server's reply (`["$ack", id, reply]`).
   * Rejects with an `AckError` whose `reason` is "nack" (the server refused: unknown event, bad
   * payload, failed handler), "timeout" (no reply within `timeout` ms, by default the client's
   * `ackTimeout`), or "closed" (the connection ended first).
   */
  emitWithAck(event, payload = null, { timeout = this._ackTimeout } = {}) {
    return new Promise((resolve, reject) => {
      const text = JSON.stringify([checkName(event), payload, this._nextAck]);
      const id = this._nextAck++;
      const timer = setTimeout(() => {
        this._pending.delete(id);
        reject(new AckError("timeout", `no reply to ${JSON.stringify(event)} within ${timeout} ms`));
      }, timeout);
      this._pending.set(id, { resolve, reject, timer });
      try {
        this._send(text);
      } catch (error) {
        clearTimeout(timer);
        this._pending.delete(id);
        reject(error);
      }
    });
  }

  /**
   * Sends a native message, untouched by the hub: a string, or binary data (ArrayBuffer, typed
   * array, Blob). A string starting with `[` would be read as a hub message, so it is refused:
   * send such text as binary.
   */
  send(data) {
    if (typeof data === "string" && /^\s*\[/.test(data)) {
      throw new TypeError("native text starting with '[' reads as a hub message: send it as binary");
    }
    this._send(data);
    return this;
  }

  /** Closes the connection (1000 by default) and stops reconnecting; pending acks reject. */
  close(code = 1000, reason = "") {
    this._closed = true;
    clearTimeout(this._timer);
    this._queue = [];
    if (this._ws) this._ws.close(code, reason);
    this._failPending("closed by this client");
  }

  _open() {
    const ws = this._protocols ? new this._WebSocket(this.url, this._protocols) : new this._WebSocket(this.url);
    ws.binaryType = "arraybuffer";
    this._ws = ws;
    ws.onmessage = (message) => this._receive(message.data);
    ws.onclose = (event) => this._onClose(ws, event);
    // A failed connection is followed by "close"; its details are there.
    ws.onerror = () => {};
  }

  // Sends now, or once the hub has greeted the connection.
  _send(data) {
    if (this._closed) throw new Error("the client is closed");
    if (this.connected) this._ws.send(data);
    else if (this._queue.length < this._maxQueued) this._queue.push(data);
    else throw new Error(`not connected, and ${this._maxQueued} messages already wait for the connection`);
  }

  _receive(data) {
    if (typeof data !== "string" || !/^\s*\[/.test(data)) {
      this._fire("$native", data);
      return;
    }
    let message;
    try {
      message = JSON.parse(data);
    } catch (error) {
      this._fire("$error", new Error(`a hub message that is not JSON: ${error.message}`));
      return;
    }
    if (!Array.isArray(message) || typeof message[0] !== "string") {
      this._fire("$error", new Error("a hub message that is not an array starting with a name"));
      return;
    }
    const [name, payload = null, third] = message;
    if (name === "$open") this._onOpen(payload);
    else if (name === "$ack" || name === "$nack") this._onAck(name, payload, third);
    else if (name.startsWith("$")) return; // a later version's message: ignored
    else if (third !== undefined && !Number.isSafeInteger(third)) {
      this._fire("$error", new Error(`the event ${JSON.stringify(name)} has an ack id that is not an integer`));
    } else this._onEvent(name, payload, third);
  }

  _onOpen(greeting) {
    const version = greeting?.v;
    if (version !== PROTOCOL_VERSION) {
      this._fire("$error", new Error(`the hub speaks wire format version ${version}; this client speaks ${PROTOCOL_VERSION}`));
      this.close(1000, "unsupported hub version");
      return;
    }
    this.id = String(greeting.id);
    const reconnected = this._opens > 0;
    const attempt = this._attempt;
    this._opens += 1;
    this._attempt = 0;
    const queued = this._queue;
    this._queue = [];
    for (const data of queued) this._ws.send(data);
    this._fire("$open", { id: this.id, reconnected });
    if (reconnected) this._fire("$reconnect", { id: this.id, attempt });
  }

  _onAck(name, id, reply) {
    const pending = this._pending.get(id);
    if (!pending) return; // late: its timeout already rejected it
    this._pending.delete(id);
    clearTimeout(pending.timer);
    if (name === "$ack") pending.resolve(reply ?? null);
    else pending.reject(new AckError("nack", `the server refused: ${reply}`));
  }

  _onEvent(name, payload, ackId) {
    const handlers = this._handlers.get(name) ?? [];
    if (ackId === undefined) {
      this._fire(name, payload);
      return;
    }
    // The server asks for a reply: the first handler's return value, or its Promise's value.
    if (handlers.length === 0) {
      this._reply(["$nack", ackId, `no handler for ${JSON.stringify(name)}`]);
      return;
    }
    let result;
    try {
      result = handlers[0](payload);
      for (const handler of handlers.slice(1)) this._call(handler, payload, name);
    } catch (error) {
      this._fire("$error", error);
      this._reply(["$nack", ackId, String(error?.message ?? error)]);
      return;
    }
    Promise.resolve(result).then(
      (reply) => this._reply(["$ack", ackId, reply ?? null]),
      (error) => {
        this._fire("$error", error);
        this._reply(["$nack", ackId, String(error?.message ?? error)]);
      },
    );
  }

  _reply(message) {
    // A reply for a connection that has since ended is dropped: the server's ack timed out.
    if (this.connected) this._ws.send(JSON.stringify(message));
  }

  _onClose(ws, event) {
    if (ws !== this._ws) return;
    this.id = null;
    const reconnecting = !this._closed && this._reconnect !== null && this._attempt < this._reconnect.maxAttempts;
    this._failPending(`closed (${event.code})`);
    if (!reconnecting) this._queue = [];
    this._fire("$close", { code: event.code, reason: event.reason, wasClean: event.wasClean, reconnecting });
    if (!reconnecting) return;
    const { initialDelay, maxDelay, factor, jitter } = this._reconnect;
    const base = Math.min(maxDelay, initialDelay * factor ** this._attempt);
    const delay = Math.round(base * (1 - jitter * Math.random()));
    this._attempt += 1;
    this._fire("$reconnecting", { attempt: this._attempt, delay });
    this._timer = setTimeout(() => {
      if (!this._closed) this._open();
    }, delay);
  }

  _failPending(why) {
    const pending = this._pending;
    this._pending = new Map();
    for (const { reject, timer } of pending.values()) {
      clearTimeout(timer);
      reject(new AckError("closed", `no reply: the connection ${why}`));
    }
  }

  _fire(event, payload) {
    for (const handler of [...(this._handlers.get(event) ?? [])]) this._call(handler, payload, event);
  }

  // A callback that throws (or rejects) is reported as "$error"; one of "$error" itself, to the console.
  _call(handler, payload, event) {
    const report = (error) => (event === "$error" ? console.error(error) : this._fire("$error", error));
    try {
      const result = handler(payload);
      if (result instanceof Promise) result.catch(report);
    } catch (error) {
      report(error);
    }
  }
}

function checkName(event) {
  if (typeof event !== "string" || event.startsWith("$")) {
    throw new TypeError(`${JSON.stringify(event)}: event names are strings not starting with '$'`);
  }
  return event;
}

function resolveUrl(url) {
  const base = globalThis.location?.href;
  const resolved = base ? new URL(url, base) : new URL(url);
  if (resolved.protocol === "http:") resolved.protocol = "ws:";
  else if (resolved.protocol === "https:") resolved.protocol = "wss:";
  return resolved.href;
}
