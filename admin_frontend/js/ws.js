// A small client for the graphql-transport-ws protocol
// (https://github.com/enisdenjo/graphql-ws/blob/master/PROTOCOL.md).
//
// Browsers cannot set headers on a WebSocket, so the token travels in `connection_init`'s
// payload as {"authorization": "Bearer <jwt>"}. The client connects on the first subscription,
// re-subscribes everything after a reconnect, and backs off between attempts. It stops for good
// when the server refuses the token (close code 4403).
//
//   const client = new GraphQLWsClient({url, connectionParams: () => ({authorization})});
//   const stop = client.subscribe({query, variables}, {next, error, complete});
//   client.onStatus((status) => ...);  // "idle" | "connecting" | "connected" | "reconnecting" | "rejected" | "closed"

const PROTOCOL = "graphql-transport-ws";

// Close codes that retrying cannot fix.
const FATAL = new Map([
  [4400, "The server did not understand a message from the page."],
  [4403, "The server refused the sign-in token for live updates."],
  [4406, "The server does not speak the graphql-transport-ws protocol."],
]);

export class GraphQLWsClient {
  constructor({ url, connectionParams = () => ({}), minRetryMs = 500, maxRetryMs = 15000, ackTimeoutMs = 10000 }) {
    this.url = url;
    this.connectionParams = connectionParams;
    this.minRetryMs = minRetryMs;
    this.maxRetryMs = maxRetryMs;
    this.ackTimeoutMs = ackTimeoutMs;
    this.socket = null;
    this.acknowledged = false;
    this.subscriptions = new Map(); // id -> {payload, sink}
    this.nextId = 1;
    this.attempt = 0;
    this.retryTimer = null;
    this.ackTimer = null;
    this.disposed = false;
    this.status = "idle";
    this.statusDetail = "";
    this.statusListeners = new Set();
  }

  onStatus(listener) {
    this.statusListeners.add(listener);
    listener(this.status, this.statusDetail);
    return () => this.statusListeners.delete(listener);
  }

  setStatus(status, detail = "") {
    this.status = status;
    this.statusDetail = detail;
    for (const listener of this.statusListeners) listener(status, detail);
  }

  /** Start a subscription; returns a function that stops it. */
  subscribe(payload, sink) {
    if (this.disposed) throw new Error("the client is closed");
    const id = String(this.nextId++);
    this.subscriptions.set(id, { payload, sink });
    if (this.acknowledged) {
      this.send({ id, type: "subscribe", payload });
    } else {
      this.connect();
    }
    return () => {
      if (!this.subscriptions.delete(id)) return;
      if (this.acknowledged) this.send({ id, type: "complete" });
    };
  }

  /** Close the socket and stop reconnecting; subscriptions end. */
  close() {
    this.disposed = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.ackTimer);
    this.subscriptions.clear();
    if (this.socket) {
      const socket = this.socket;
      this.socket = null;
      // Closing a socket that is still connecting makes the browser log an error; wait for it.
      if (socket.readyState === WebSocket.CONNECTING) socket.addEventListener("open", () => socket.close(1000, "bye"));
      else socket.close(1000, "bye");
    }
    this.setStatus("closed");
  }

  connect() {
    if (this.socket || this.disposed || this.retryTimer) return;
    this.setStatus(this.attempt ? "reconnecting" : "connecting");
    const socket = new WebSocket(this.url, PROTOCOL);
    this.socket = socket;
    this.acknowledged = false;
    socket.addEventListener("open", () => {
      if (socket !== this.socket) return;
      if (socket.protocol !== PROTOCOL) {
        socket.close(4406, "unsupported subprotocol");
        return;
      }
      this.send({ type: "connection_init", payload: this.connectionParams() });
      this.ackTimer = setTimeout(() => socket.close(4504, "no connection_ack"), this.ackTimeoutMs);
    });
    socket.addEventListener("message", (event) => {
      if (socket === this.socket) this.receive(event.data);
    });
    socket.addEventListener("close", (event) => this.closed(socket, event));
    // A failed socket also fires "close", which decides what happens next.
    socket.addEventListener("error", () => {});
  }

  receive(data) {
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      this.socket?.close(4400, "invalid message");
      return;
    }
    switch (message.type) {
      case "connection_ack":
        clearTimeout(this.ackTimer);
        this.acknowledged = true;
        this.attempt = 0;
        this.setStatus("connected");
        for (const [id, { payload }] of this.subscriptions) this.send({ id, type: "subscribe", payload });
        break;
      case "ping":
        this.send({ type: "pong", payload: message.payload });
        break;
      case "pong":
        break;
      case "next":
        this.subscriptions.get(message.id)?.sink.next?.(message.payload);
        break;
      case "error": {
        const entry = this.subscriptions.get(message.id);
        this.subscriptions.delete(message.id);
        entry?.sink.error?.(message.payload);
        break;
      }
      case "complete": {
        const entry = this.subscriptions.get(message.id);
        this.subscriptions.delete(message.id);
        entry?.sink.complete?.();
        break;
      }
      default:
        this.socket?.close(4400, `unexpected message type ${message.type}`);
    }
  }

  send(message) {
    if (this.socket?.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(message));
  }

  closed(socket, event) {
    if (socket !== this.socket) return; // closed by close()
    clearTimeout(this.ackTimer);
    this.socket = null;
    this.acknowledged = false;
    if (this.disposed) return;
    if (FATAL.has(event.code)) {
      this.disposed = true;
      const error = [{ message: FATAL.get(event.code), extensions: { code: event.code === 4403 ? "UNAUTHENTICATED" : "INTERNAL" } }];
      for (const { sink } of this.subscriptions.values()) sink.error?.(error);
      this.subscriptions.clear();
      this.setStatus("rejected", FATAL.get(event.code));
      return;
    }
    if (this.subscriptions.size === 0) {
      this.setStatus("idle");
      return;
    }
    // Exponential backoff with full jitter, so that many pages do not reconnect in step.
    const ceiling = Math.min(this.maxRetryMs, this.minRetryMs * 2 ** this.attempt);
    const delay = Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
    this.attempt += 1;
    this.setStatus("reconnecting", `Connection lost; retrying in ${Math.ceil(delay / 1000)} s.`);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.connect();
    }, delay);
  }
}

/** ws://host/graphql for a page at http://host/admin/ (wss for https). */
export function websocketUrl(path) {
  const url = new URL(path, window.location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.toString();
}
