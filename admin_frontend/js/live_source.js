// Where the live feed's delivery changes come from.
//
// By default (`config.liveFeed: "subscription"`) the `deliveryUpdates` subscription streams every
// status change over the page's graphql-transport-ws connection: the workers publish each batch's
// changes once, and the server passes them on. If the subscription fails (the server refuses it,
// ends it, or the socket cannot speak the protocol) the feed falls back to polling `deliveries`
// every `config.livePollSeconds`; `retryStreaming()` tries the subscription again.
//
// Both sources hand the view the same shape, one status change of one delivery:
//   {id, eventId, eventType, campaignId, userId, channel, status, at, reason}
// and report their state through `onState({mode, state, detail, error, at})`, where `state` is
//   "connecting" | "streaming" | "reconnecting"   (mode "subscription")
//   "polling"                                      (mode "poll": the fallback, or config "poll")
//   "stopped"                                      (sign-in refused; retrying cannot help)

import config from "../config.js";
import { graphql } from "./api.js";
import { ApiError } from "./errors.js";

const UPDATE_FIELDS = "id eventId eventType campaignId userId channel status at reason";

const SUBSCRIPTION = `subscription LiveDeliveryUpdates { deliveryUpdates { ${UPDATE_FIELDS} } }`;

// The poll (fallback) and the catch-up after a reconnect read the newest deliveries.
const RECENT = `query LiveDeliveries($first: Int!) {
  deliveries(first: $first) {
    edges { node { id eventId eventType campaignId userId channel status updatedAt timeline { status at reason } } }
  }
}`;

const FATAL_CODES = new Set(["UNAUTHENTICATED", "FORBIDDEN"]);
const CATCH_UP_MARGIN_MS = 30_000;

/** A Delivery (from `deliveries`) as one update: its latest status change. */
function fromDelivery(node) {
  const last = node.timeline?.[node.timeline.length - 1];
  return {
    id: node.id,
    eventId: node.eventId,
    eventType: node.eventType,
    campaignId: node.campaignId,
    userId: node.userId,
    channel: node.channel,
    status: node.status,
    at: node.updatedAt,
    reason: last && last.status === node.status ? last.reason : null,
  };
}

function toApiError(errors, fallback = "The live stream failed.") {
  const first = (Array.isArray(errors) ? errors[0] : errors) ?? {};
  return new ApiError({ code: first.extensions?.code ?? "INTERNAL", message: first.message ?? fallback });
}

async function fetchRecent(first) {
  const data = await graphql(RECENT, { first });
  // Oldest first, so the newest are applied last.
  return [...data.deliveries.edges].reverse().map(({ node }) => fromDelivery(node));
}

/**
 * Start the feed. `onUpdate(update)` is called for each status change; `onState(state)` reports
 * where updates come from and how that is going. Returns {stop, retryStreaming}.
 */
export function startDeliveryFeed({ ws, onUpdate, onState, mode = config.liveFeed }) {
  let current = null;
  let stopped = false;

  function poll(reason = null) {
    current?.stop();
    current = pollDeliveries({ onUpdate, onState, seconds: config.livePollSeconds, reason });
  }

  function stream() {
    current?.stop();
    if (!ws) {
      poll(new ApiError({ code: "NETWORK", message: "There is no live connection." }));
      return;
    }
    current = subscribeDeliveryUpdates({
      ws,
      onUpdate,
      onState,
      onFailure(error) {
        if (stopped) return;
        if (FATAL_CODES.has(error.code)) {
          current?.stop();
          onState?.({ mode: "subscription", state: "stopped", error });
        } else {
          poll(error);
        }
      },
    });
  }

  if (mode === "subscription") stream();
  else poll();

  return {
    retryStreaming() {
      if (!stopped) stream();
    },
    stop() {
      stopped = true;
      current?.stop();
    },
  };
}

function subscribeDeliveryUpdates({ ws, onUpdate, onState, onFailure }) {
  let ended = false;
  let everConnected = false;
  let lastStatus = null;
  let unsubscribe = () => {};
  let stopStatus = () => {};

  function end() {
    if (ended) return;
    ended = true;
    stopStatus();
    unsubscribe();
  }

  function fail(error) {
    if (ended) return;
    end();
    onFailure(error);
  }

  // Changes made while the socket was down were never streamed: read the newest deliveries once
  // and pass on those changed since shortly before the connection was lost (the margin allows
  // for the browser's clock being off from the workers').
  async function catchUp(since) {
    try {
      const updates = await fetchRecent(100);
      if (!ended) updates.filter((u) => !(Date.parse(u.at) < since - CATCH_UP_MARGIN_MS)).forEach(onUpdate);
    } catch {
      // The stream itself is back; a failed catch-up only leaves older rows as they were.
    }
  }

  try {
    unsubscribe = ws.subscribe(
      { query: SUBSCRIPTION, variables: {} },
      {
        next(payload) {
          if (ended) return;
          const update = payload.data?.deliveryUpdates;
          if (update) onUpdate(update);
          else if (payload.errors?.length) fail(toApiError(payload.errors));
        },
        error(errors) {
          fail(toApiError(errors));
        },
        complete() {
          fail(new ApiError({ code: "UNAVAILABLE", message: "The server ended the live stream." }));
        },
      },
    );
  } catch (error) {
    // The page's connection has been closed for good.
    queueMicrotask(() => fail(new ApiError({ code: "NETWORK", message: String(error.message || error) })));
    return { stop: end };
  }

  let lostAt = null;
  stopStatus = ws.onStatus((status, detail) => {
    if (ended || status === lastStatus) return;
    if (lastStatus === "connected") lostAt = Date.now();
    lastStatus = status;
    if (status === "connected") {
      onState?.({ mode: "subscription", state: "streaming", at: new Date() });
      if (lostAt !== null) catchUp(lostAt);
      lostAt = null;
      everConnected = true;
    } else if (status === "reconnecting" || (status === "connecting" && everConnected)) {
      onState?.({ mode: "subscription", state: "reconnecting", detail });
    } else if (status === "connecting" || status === "idle") {
      onState?.({ mode: "subscription", state: "connecting", detail });
    }
    // "rejected" and "closed" reach the subscription's error sink (or end the page's session).
  });

  return { stop: end };
}

function pollDeliveries({ onUpdate, onState, seconds, reason, first = 50 }) {
  const seen = new Map(); // id -> updatedAt
  let timer = null;
  let stopped = false;
  let failures = 0;

  async function tick() {
    timer = null;
    if (stopped) return;
    if (document.hidden) {
      schedule(seconds * 1000);
      return;
    }
    try {
      const updates = await fetchRecent(first);
      if (stopped) return;
      failures = 0;
      for (const update of updates) {
        if (seen.get(update.id) !== update.at) {
          seen.set(update.id, update.at);
          onUpdate(update);
        }
      }
      // Forget what has scrolled out of the window the poll reads.
      if (seen.size > first * 4) for (const id of [...seen.keys()].slice(0, seen.size - first * 2)) seen.delete(id);
      onState?.({ mode: "poll", state: "polling", seconds, reason, at: new Date() });
      schedule(seconds * 1000);
    } catch (error) {
      if (stopped) return;
      failures += 1;
      const fatal = FATAL_CODES.has(error.code);
      onState?.({ mode: "poll", state: fatal ? "stopped" : "polling", seconds, reason, error });
      if (!fatal) schedule(Math.min(30000, seconds * 1000 * 2 ** failures));
    }
  }

  function schedule(ms) {
    if (!stopped) timer = setTimeout(tick, ms);
  }

  onState?.({ mode: "poll", state: "polling", seconds, reason });
  tick();
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}
