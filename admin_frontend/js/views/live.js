// Live feed: one row per delivery, moving through its statuses (queued, sending, sent…) as the
// workers report them; the most recently changed on top, the latest KEEP deliveries kept.

import { startDeliveryFeed } from "../live_source.js";
import { STATUSES, channelLabel, emptyState, formatTime, h, pageTitle, setChildren, statusBadge } from "../dom.js";
import { describeError } from "../errors.js";

const KEEP = 300; // delivery rows kept on screen
const BACKLOG = KEEP * 4; // updates held (paused, or between two paints) before the oldest are dropped
const PAINT_MS = 80; // a burst of updates is painted at most this often

const statusLabel = (status) => STATUSES.find((s) => s.value === status)?.label ?? status;
const plural = (n, one, many) => `${n} ${n === 1 ? one : many}`;

/** Why the stream failed: the server's own words when it gave some, else the general ones. */
function sentence(error) {
  const text = error.detail && error.detail !== error.code && error.code !== "INTERNAL" ? error.detail : describeError(error);
  return /[.!?]$/.test(text) ? text : `${text}.`;
}

export function render(root, { ctx }) {
  const rows = new Map(); // delivery id -> {el, at (ms), status, trail: [{status, at}], parts}
  let paused = false;
  let held = []; // updates received while paused
  let heldCount = 0;
  let pending = []; // updates waiting for the next paint
  let paintTimer = null;

  const list = h("ol", { class: "feed", id: "live-feed", "aria-live": "off" });
  const empty = emptyState("Waiting for deliveries…", "New deliveries and status changes appear here as they happen. Send a message to see one.", h("a", { class: "btn", href: "#/send" }, "Send a message"));
  const stateLabel = h("span", { class: "live-state-label" });
  const state = h("p", { class: "live-state", id: "live-state", role: "status", "data-state": "connecting" }, h("span", { class: "dot", "aria-hidden": "true" }), stateLabel);
  const note = h("p", { class: "help", id: "live-mode" });
  const health = h("p", { class: "feed-health" });
  const retry = h("button", { type: "button", class: "btn small", id: "live-retry", hidden: true }, "Try streaming again");
  const pause = h("button", { type: "button", class: "btn small", "aria-pressed": "false" }, "Pause");
  const counter = h("span", { class: "muted", id: "live-held" });

  setChildren(
    root,
    h("div", { class: "page-head" }, pageTitle("Live feed"), h("div", { class: "head-actions" }, counter, pause)),
    h("div", { class: "notice live-notice" }, h("div", { class: "live-notice-text" }, state, note, health), retry),
    empty,
    list,
  );

  pause.addEventListener("click", () => {
    paused = !paused;
    pause.setAttribute("aria-pressed", String(paused));
    pause.textContent = paused ? "Resume" : "Pause";
    if (!paused) {
      const resumed = held;
      held = [];
      heldCount = 0;
      counter.textContent = "";
      paint(resumed);
    }
  });

  // --- rows -------------------------------------------------------------------------------

  function newRow(u) {
    const parts = {
      time: h("time"),
      status: h("span", { class: "feed-status" }),
      what: h("span", { class: "feed-what" }),
    };
    const el = h(
      "li",
      { class: "feed-item", "data-delivery-id": u.id, "data-event-id": u.eventId },
      parts.time,
      parts.status,
      h("span", { class: "feed-channel" }, channelLabel(u.channel)),
      parts.what,
      h("span", { class: "feed-who mono" }, u.userId),
      h("a", { class: "feed-link", href: `#/history?eventId=${encodeURIComponent(u.eventId)}`, "aria-label": `Open event ${u.eventId} in history` }, "History →"),
    );
    return { el, at: -Infinity, status: null, trail: [], parts, eventType: u.eventType };
  }

  /** Merge one update into its delivery's row; false when it told nothing new. */
  function merge(u) {
    const at = Date.parse(u.at);
    const when = Number.isNaN(at) ? Date.now() : at;
    let row = rows.get(u.id);
    const fresh = !row;
    if (fresh) row = newRow(u);
    if (row.trail.some((t) => t.status === u.status && t.at === when)) return false;
    row.trail.push({ status: u.status, at: when, reason: u.reason });
    row.trail.sort((a, b) => a.at - b.at);
    // An update older than what the row shows (the sources are not strictly ordered) only
    // fills in the trail.
    const latest = when >= row.at;
    if (latest) {
      row.at = when;
      row.status = u.status;
      row.reason = u.reason;
      row.iso = u.at;
    }
    fill(row);
    if (fresh) rows.set(u.id, row);
    if (latest) place(row, fresh);
    return true;
  }

  function fill(row) {
    const { el, parts } = row;
    el.dataset.status = row.status;
    el.dataset.trail = row.trail.map((t) => t.status).join(" ");
    parts.time.setAttribute("datetime", row.iso);
    parts.time.textContent = formatTime(row.iso);
    const badge = statusBadge(row.status);
    badge.title = row.trail.map((t) => `${statusLabel(t.status)} at ${formatTime(new Date(t.at).toISOString())}`).join(" → ");
    setChildren(parts.status, badge);
    setChildren(
      parts.what,
      h("strong", {}, row.eventType),
      row.trail.length > 1 ? h("span", { class: "feed-trail" }, ` · ${row.trail.map((t) => statusLabel(t.status)).join(" → ")}`) : null,
      row.reason ? h("span", { class: "feed-reason" }, ` · ${row.reason}`) : null,
    );
  }

  /** Put a row at its place: newest change first. */
  function place(row, fresh) {
    const { el } = row;
    let before = null;
    for (const child of list.children) {
      if (child === el) continue;
      if (rows.get(child.dataset.deliveryId).at <= row.at) {
        before = child;
        break;
      }
    }
    const inPlace = !fresh && el.parentNode === list && el.nextElementSibling === before;
    if (!inPlace) list.insertBefore(el, before);
    // Replay the highlight: blue for a new delivery, green for a change of status.
    el.classList.remove("new", "changed");
    void el.offsetWidth;
    el.classList.add(fresh ? "new" : "changed");
  }

  function paint(updates) {
    for (const u of updates) merge(u);
    while (list.children.length > KEEP) {
      const last = list.lastElementChild;
      rows.delete(last.dataset.deliveryId);
      last.remove();
    }
    empty.hidden = rows.size > 0;
  }

  function flush() {
    paintTimer = null;
    const updates = pending;
    pending = [];
    paint(updates);
  }

  function receive(update) {
    if (paused) {
      held.push(update);
      if (held.length > BACKLOG) held.splice(0, held.length - BACKLOG);
      heldCount += 1;
      counter.textContent = `${plural(heldCount, "update", "updates")} waiting`;
      return;
    }
    pending.push(update);
    if (pending.length > BACKLOG) pending.splice(0, pending.length - BACKLOG);
    paintTimer ??= setTimeout(flush, PAINT_MS);
  }

  // --- where updates come from ----------------------------------------------------------

  let lastUpdate = null;

  function showState(s) {
    state.dataset.state = s.state;
    state.dataset.mode = s.mode;
    retry.hidden = !(s.mode === "poll" && s.reason);
    health.className = "feed-health";
    health.textContent = "";
    switch (s.state) {
      case "connecting":
        stateLabel.textContent = "Connecting…";
        note.textContent = "Opening the stream of delivery updates.";
        break;
      case "streaming":
        stateLabel.textContent = "Streaming";
        note.textContent = `Status changes stream in as the workers report them. Each delivery keeps one row, the most recent change on top; the latest ${KEEP} are kept.`;
        health.className = "feed-health ok";
        health.textContent = lastUpdate ? `Last update at ${lastUpdate.toLocaleTimeString()}.` : `Connected at ${s.at.toLocaleTimeString()}; no changes yet.`;
        break;
      case "reconnecting":
        stateLabel.textContent = "Reconnecting…";
        note.textContent = `${s.detail || "The connection was lost; retrying."} Changes made meanwhile are read back once it returns.`;
        break;
      case "polling":
        stateLabel.textContent = `Checking every ${s.seconds} s`;
        note.textContent = s.reason
          ? `Streaming is unavailable: ${sentence(s.reason)} The feed checks for changes every ${s.seconds} s instead.`
          : `Updates arrive by checking for changes every ${s.seconds} s.`;
        if (s.error) {
          health.className = "feed-health error";
          health.textContent = `Checking for changes failed: ${describeError(s.error)} Retrying…`;
        } else if (s.at) {
          health.className = "feed-health ok";
          health.textContent = `Up to date at ${s.at.toLocaleTimeString()}.`;
        }
        break;
      case "stopped":
        stateLabel.textContent = "Stopped";
        note.textContent = "Live updates have stopped.";
        health.className = "feed-health error";
        health.textContent = describeError(s.error);
        break;
    }
  }

  let current = null;
  const feed = startDeliveryFeed({
    ws: ctx.ws,
    onUpdate(update) {
      lastUpdate = new Date();
      receive(update);
      if (current?.state === "streaming") health.textContent = `Last update at ${lastUpdate.toLocaleTimeString()}.`;
    },
    onState(s) {
      current = s;
      showState(s);
    },
  });
  retry.addEventListener("click", () => feed.retryStreaming());

  return () => {
    feed.stop();
    clearTimeout(paintTimer);
  };
}
