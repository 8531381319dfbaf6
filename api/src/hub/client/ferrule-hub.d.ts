// TypeScript declarations of ferrule-hub.js, the browser client of a ferrule hub (wire format
// version 1). Served by the application beside the module, as `ferrule::hub::CLIENT_TS`.

/** The wire format version this client speaks. */
export declare const PROTOCOL_VERSION: 1;

/** Why an `emitWithAck` got no reply. */
export declare class AckError extends Error {
  readonly name: "AckError";
  /** "timeout": no reply in time; "nack": the server refused; "closed": the connection ended first. */
  readonly reason: "timeout" | "nack" | "closed";
}

/** Reconnection with exponential backoff and jitter. */
export interface ReconnectOptions {
  /** The first delay, in ms (500). */
  initialDelay?: number;
  /** The longest delay, in ms (10000). */
  maxDelay?: number;
  /** Each attempt's delay is the previous one's times this (2). */
  factor?: number;
  /** Each delay is shortened by a random fraction up to this (0.5). */
  jitter?: number;
  /** Attempts in a row before giving up (Infinity). */
  maxAttempts?: number;
}

export interface ConnectOptions {
  /** The WebSocket constructor to use (the global one by default; Node's `ws` package outside browsers). */
  WebSocket?: new (url: string, protocols?: string | string[]) => WebSocket;
  /** Subprotocols to offer. */
  protocols?: string | string[];
  /** The default timeout of `emitWithAck`, in ms (10000). */
  ackTimeout?: number;
  /** Messages kept while not connected (1000); past it, emits and sends throw. */
  maxQueued?: number;
  /** Reconnect after the connection ends without `close()` (off by default). */
  reconnect?: boolean | ReconnectOptions;
}

/** The events of the client itself; the server's events cannot start with `$`. */
export interface ClientEvents {
  /** The hub greeted this connection: its id, and whether it follows a reconnection. */
  $open: { id: string; reconnected: boolean };
  /** The client reconnected (fired after `$open`): the new id, and the attempts it took. */
  $reconnect: { id: string; attempt: number };
  /** The connection ended; `reconnecting` says whether the client will try again. */
  $close: { code: number; reason: string; wasClean: boolean; reconnecting: boolean };
  /** The next reconnection attempt starts in `delay` ms. */
  $reconnecting: { attempt: number; delay: number };
  /** A native message: text, or binary as an ArrayBuffer. */
  $native: string | ArrayBuffer;
  /** A malformed message, a callback that threw, or a hub speaking another wire format version. */
  $error: Error;
}

/**
 * The application's events: map each name to its payload type, e.g.
 * `connect<{ chat: { from: string; text: string } }>(url)`.
 */
export type EventMap = Record<string, unknown>;

/** A connection to a hub. */
export declare class HubClient<Events extends EventMap = EventMap> {
  constructor(url: string, options?: ConnectOptions);
  /** The resolved `ws:`/`wss:` address. */
  readonly url: string;
  /** The connection's id from the hub's `$open`, or null while not connected. */
  readonly id: string | null;
  /** Whether the hub has greeted the current connection. */
  readonly connected: boolean;
  /** Calls `callback` for each event; its return value (or Promise's) answers an ack request. */
  on<K extends keyof ClientEvents>(event: K, callback: (payload: ClientEvents[K]) => void): this;
  on<K extends keyof Events & string>(event: K, callback: (payload: Events[K]) => unknown): this;
  /** Calls `callback` for the next such event only. */
  once<K extends keyof ClientEvents>(event: K, callback: (payload: ClientEvents[K]) => void): this;
  once<K extends keyof Events & string>(event: K, callback: (payload: Events[K]) => unknown): this;
  /** Removes `callback`, or every callback of the event when none is given. */
  off(event: string, callback?: (payload: any) => unknown): this;
  /** Sends `["event", payload]`; queued until the hub's greeting (throws when the queue is full or the client closed). */
  emit<K extends keyof Events & string>(event: K, payload?: Events[K]): this;
  /** Sends `["event", payload, id]` and resolves with the reply; rejects with an `AckError` (or a TypeError for a reserved name). */
  emitWithAck<R = unknown, K extends keyof Events & string = keyof Events & string>(
    event: K,
    payload?: Events[K],
    options?: { timeout?: number },
  ): Promise<R>;
  /** Sends a native message (text not starting with `[`, or binary). */
  send(data: string | ArrayBufferLike | ArrayBufferView | Blob): this;
  /** Closes (1000 by default) and stops reconnecting; pending acks reject with "closed". */
  close(code?: number, reason?: string): void;
}

/** Opens a connection to the hub at `url` (ws:, wss:, http:, https:, or a path on the page's host). */
export declare function connect<Events extends EventMap = EventMap>(url: string, options?: ConnectOptions): HubClient<Events>;
