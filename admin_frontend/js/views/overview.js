// Overview: deliveries over time per status and per channel for the last hour, day or week
// (`deliveryStats`), failure rates per channel and provider, the busiest event types and
// campaigns, RabbitMQ queue depths and dead letters waiting (`queueStats`), and live counters
// fed by the `deliveryUpdates` stream. Charts are uPlot, served from vendor/ (scripts/setup.sh).

import { graphql } from "../api.js";
import { CHANNELS, STATUSES, channelLabel, emptyState, formatTime, h, pageTitle, setChildren, spinner } from "../dom.js";
import { setBanner } from "../errors.js";
import { startDeliveryFeed } from "../live_source.js";

const HOUR = 3_600_000;
// Each range is counted in buckets that end at the next whole bucket after now.
const RANGES = [
  { key: "hour", label: "Last hour", ms: HOUR, bucket: "MINUTE", bucketMs: 60_000, time: true },
  { key: "day", label: "Last day", ms: 24 * HOUR, bucket: "HOUR", bucketMs: HOUR, time: true },
  { key: "week", label: "Last week", ms: 7 * 24 * HOUR, bucket: "SIX_HOURS", bucketMs: 6 * HOUR, time: false },
];
// The outcomes a failure rate is taken over: queued, sending and skipped deliveries have none.
const OUTCOMES = ["SENT", "DELIVERED", "FAILED", "DEAD"];
const FAILURES = ["FAILED", "DEAD"];
const TOP = 5;
const STATUS_COLORS = { QUEUED: "#8a94a6", SENDING: "#3554d1", SENT: "#1a7f37", DELIVERED: "#0e5a27", FAILED: "#d39b00", SKIPPED: "#6f42c1", DEAD: "#b42318", BOUNCED: "#9a3412", COMPLAINED: "#7c2d12" };
const CHANNEL_COLORS = { EMAIL: "#3554d1", SMS: "#d97706", PUSH: "#0e9384", IN_APP: "#c11574" };

const STATS = `query Overview($from: DateTime!, $to: DateTime!, $bucket: StatsBucket!) {
  byStatus: deliveryStats(from: $from, to: $to, bucket: $bucket, groupBy: [STATUS]) { total rows { bucketStart status count } }
  byChannel: deliveryStats(from: $from, to: $to, bucket: $bucket, groupBy: [CHANNEL]) { rows { bucketStart channel count } }
  channelOutcomes: deliveryStats(from: $from, to: $to, groupBy: [CHANNEL, STATUS]) { rows { channel status count } }
  providerOutcomes: deliveryStats(from: $from, to: $to, groupBy: [PROVIDER, STATUS]) { rows { provider status count } }
  eventTypes: deliveryStats(from: $from, to: $to, groupBy: [EVENT_TYPE]) { rows { eventType count } }
  campaigns: deliveryStats(from: $from, to: $to, groupBy: [CAMPAIGN]) { rows { campaignId count } }
  queueStats { deadLettersWaiting queues { name messages consumers deadLetter } }
}`;

const statusLabel = (status) => STATUSES.find((s) => s.value === status)?.label ?? status;
const percent = (part, whole) => (whole ? `${((100 * part) / whole).toFixed(1)} %` : "—");
const number = new Intl.NumberFormat();

/** uPlot, loaded on first use: a missing vendor/ (set-up not run) breaks the charts only. */
let uPlotModule = null;
async function loadUPlot() {
  uPlotModule ??= import("../../vendor/uplot/uPlot.esm.js").then((m) => m.default);
  return uPlotModule;
}

/** The window of a range: [from, to) with `to` the end of the current bucket. */
function windowOf(range, now = Date.now()) {
  const to = Math.ceil((now + 1) / range.bucketMs) * range.bucketMs;
  return { from: to - range.ms, to };
}

/** Counts per bucket start (ms) for each value of `key`, zeros where a bucket had none. */
function series(rows, key, values, win, range) {
  const starts = [];
  for (let t = win.from; t < win.to; t += range.bucketMs) starts.push(t);
  const index = new Map(starts.map((t, i) => [t, i]));
  const counts = Object.fromEntries(values.map((v) => [v, starts.map(() => 0)]));
  for (const row of rows) {
    const i = index.get(Date.parse(row.bucketStart));
    if (i !== undefined && counts[row[key]]) counts[row[key]][i] += row.count;
  }
  return { starts, counts };
}

/** {value: {outcomes, failures}} from rows grouped by `key` and status. */
function failureRates(rows, key) {
  const rates = new Map();
  for (const row of rows) {
    if (!OUTCOMES.includes(row.status)) continue;
    const name = row[key] ?? null;
    const rate = rates.get(name) ?? { outcomes: 0, failures: 0 };
    rate.outcomes += row.count;
    if (FAILURES.includes(row.status)) rate.failures += row.count;
    rates.set(name, rate);
  }
  return rates;
}

function table(id, caption, headings, rows) {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: "table compact", id },
      h("caption", { class: "visually-hidden" }, caption),
      h("thead", {}, h("tr", {}, headings.map(([label, num]) => h("th", { scope: "col", class: num ? "num" : null }, label)))),
      h("tbody", {}, rows),
    ),
  );
}

function card(title, ...children) {
  return h("section", { class: "card overview-card" }, h("h2", {}, title), ...children);
}

export function render(root, { ctx }) {
  let disposed = false;
  let range = RANGES[0];
  let charts = [];
  let loading = null;

  const banner = h("div", { class: "banner-slot", hidden: true });
  const rangeButtons = RANGES.map((r) =>
    h("button", { type: "button", class: "btn small", "data-range": r.key, "aria-pressed": String(r === range), onclick: () => choose(r) }, r.label),
  );
  const refresh = h("button", { type: "button", class: "btn small", id: "overview-refresh", onclick: () => load() }, "Refresh");
  const asOf = h("p", { class: "muted", id: "overview-window", "aria-live": "polite" }, spinner());
  const kpis = h("div", { class: "kpis", id: "overview-kpis" });
  const statusChart = h("div", { class: "chart", id: "chart-status" });
  const channelChart = h("div", { class: "chart", id: "chart-channel" });
  const rates = h("div", { class: "grid-2" });
  const busiest = h("div", { class: "grid-2" });
  const queues = h("div", { id: "overview-queues" });
  const live = h("div", { class: "kpis live-kpis", id: "overview-live" });
  const liveState = h("p", { class: "muted", id: "overview-live-state", "data-state": "connecting" }, "Connecting to the delivery stream…");

  setChildren(
    root,
    h("div", { class: "page-head" }, pageTitle("Overview"), h("div", { class: "head-actions", role: "group", "aria-label": "Time range" }, rangeButtons, refresh)),
    asOf,
    banner,
    kpis,
    card("Live since this page opened", liveState, live),
    h("div", { class: "grid-2" }, card("Deliveries by status", statusChart), card("Deliveries by channel", channelChart)),
    rates,
    busiest,
    card("Queues", queues),
  );

  function choose(r) {
    range = r;
    rangeButtons.forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.range === r.key)));
    load();
  }

  async function load() {
    loading?.abort();
    const controller = new AbortController();
    loading = controller;
    const win = windowOf(range);
    refresh.disabled = true;
    try {
      const data = await graphql(
        STATS,
        { from: new Date(win.from).toISOString(), to: new Date(win.to).toISOString(), bucket: range.bucket },
        { signal: controller.signal },
      );
      if (disposed || loading !== controller) return;
      setBanner(banner, null);
      await show(data, win);
    } catch (error) {
      if (error.name === "AbortError" || disposed) return;
      setBanner(banner, error);
      setChildren(asOf, "The figures could not be loaded.");
    } finally {
      if (loading === controller) refresh.disabled = false;
    }
  }

  async function show(data, win) {
    const format = range.time ? formatTime : (iso) => new Date(iso).toLocaleString();
    setChildren(
      asOf,
      `${range.label}: deliveries created from ${format(new Date(win.from).toISOString())} to ${format(new Date(win.to).toISOString())}, `,
      `in buckets of ${range.bucketMs >= HOUR ? `${range.bucketMs / HOUR} h` : `${range.bucketMs / 60_000} min`}.`,
    );
    showKpis(data);
    await showCharts(data, win);
    showRates(data);
    showBusiest(data);
    showQueues(data.queueStats);
    root.querySelector("#overview-window").dataset.loaded = range.key;
  }

  function showKpis(data) {
    const byStatus = Object.fromEntries(STATUSES.map((s) => [s.value, 0]));
    for (const row of data.byStatus.rows) byStatus[row.status] += row.count;
    const outcomes = OUTCOMES.reduce((n, s) => n + byStatus[s], 0);
    const failures = FAILURES.reduce((n, s) => n + byStatus[s], 0);
    const kpi = (id, label, value, extra) => h("div", { class: "kpi", id }, h("span", { class: "kpi-value" }, value), h("span", { class: "kpi-label" }, label), extra);
    setChildren(
      kpis,
      kpi("kpi-total", "Deliveries", number.format(data.byStatus.total)),
      ["SENT", "FAILED", "DEAD", "SKIPPED"].map((s) => kpi(`kpi-${s.toLowerCase()}`, statusLabel(s), number.format(byStatus[s]))),
      kpi("kpi-failure-rate", "Failure rate", percent(failures, outcomes)),
      kpi("kpi-dead-letters", "Dead letters waiting", number.format(data.queueStats.deadLettersWaiting), h("a", { href: "#/dead-letters", class: "kpi-link" }, "Review →")),
    );
  }

  async function showCharts(data, win) {
    charts.forEach((c) => c.destroy());
    charts = [];
    const statuses = STATUSES.map((s) => s.value);
    const channels = CHANNELS.map((c) => c.value);
    const plots = [
      { el: statusChart, id: "status", s: series(data.byStatus.rows, "status", statuses, win, range), values: statuses, label: statusLabel, colors: STATUS_COLORS },
      { el: channelChart, id: "channel", s: series(data.byChannel.rows, "channel", channels, win, range), values: channels, label: channelLabel, colors: CHANNEL_COLORS },
    ];
    let uPlot;
    try {
      uPlot = await loadUPlot();
    } catch {
      uPlot = null;
    }
    if (disposed) return;
    for (const p of plots) {
      // Only the series with deliveries in the window are drawn; the table lists them too.
      const shown = p.values.filter((v) => p.s.counts[v].some((n) => n > 0));
      const canvas = h("div", { class: "chart-canvas" });
      const dataTable = table(
        `chart-${p.id}-table`,
        `Deliveries per bucket by ${p.id}`,
        [["Bucket", false], ...shown.map((v) => [p.label(v), true])],
        p.s.starts
          .map((t, i) => ({ t, i }))
          .filter(({ i }) => shown.some((v) => p.s.counts[v][i] > 0))
          .map(({ t, i }) => h("tr", { "data-bucket": new Date(t).toISOString() }, h("td", {}, new Date(t).toLocaleString()), shown.map((v) => h("td", { class: "num", "data-series": v }, p.s.counts[v][i])))),
      );
      setChildren(
        p.el,
        shown.length ? canvas : emptyState("No deliveries", "Nothing was created in this window."),
        uPlot ? null : h("p", { class: "alert alert-error" }, "The chart library is missing: run scripts/setup.sh."),
        shown.length ? h("details", { class: "chart-data" }, h("summary", {}, "Show as a table"), dataTable) : null,
      );
      if (!uPlot || !shown.length) continue;
      const width = Math.max(280, p.el.clientWidth || 520);
      const chart = new uPlot(
        {
          width,
          height: 220,
          legend: { live: false },
          scales: { x: { time: true }, y: { range: (_, min, max) => [0, Math.max(1, max)] } },
          axes: [{}, { size: 44 }],
          series: [
            {},
            ...shown.map((v) => ({ label: p.label(v), stroke: p.colors[v], width: 2, points: { show: p.s.starts.length <= 30 } })),
          ],
        },
        [p.s.starts.map((t) => t / 1000), ...shown.map((v) => p.s.counts[v])],
        canvas,
      );
      chart.root.dataset.series = shown.join(" ");
      charts.push(chart);
    }
  }

  function showRates(data) {
    const rateRows = (rates, key, label) =>
      [...rates.entries()]
        .sort((a, b) => b[1].outcomes - a[1].outcomes)
        .map(([name, r]) =>
          h(
            "tr",
            { [`data-${key}`]: name ?? "" },
            h("td", {}, label(name)),
            h("td", { class: "num outcomes" }, number.format(r.outcomes)),
            h("td", { class: "num failures" }, number.format(r.failures)),
            h("td", { class: "num rate" }, percent(r.failures, r.outcomes)),
          ),
        );
    const headings = (first) => [[first, false], ["With an outcome", true], ["Failed", true], ["Failure rate", true]];
    const channelRates = failureRates(data.channelOutcomes.rows, "channel");
    const providerRates = failureRates(data.providerOutcomes.rows, "provider");
    setChildren(
      rates,
      card(
        "Failure rate per channel",
        channelRates.size ? table("rates-channel", "Failure rate per channel", headings("Channel"), rateRows(channelRates, "channel", channelLabel)) : h("p", { class: "muted" }, "No delivery has an outcome yet."),
      ),
      card(
        "Failure rate per provider",
        providerRates.size
          ? table("rates-provider", "Failure rate per provider (of each delivery's last attempt)", headings("Provider"), rateRows(providerRates, "provider", (p) => p ?? "(none)"))
          : h("p", { class: "muted" }, "No delivery has an outcome yet."),
      ),
    );
  }

  function showBusiest(data) {
    const top = (rows, key) => rows.filter((r) => r[key] !== null).slice(0, TOP);
    const list = (id, rows, key, attr, link) =>
      rows.length
        ? h("ol", { class: "top-list", id }, rows.map((r) => h("li", { [`data-${attr}`]: r[key] }, link(r[key]), h("span", { class: "top-count" }, number.format(r.count)))))
        : h("p", { class: "muted" }, "None in this window.");
    setChildren(
      busiest,
      card("Busiest event types", list("top-event-types", top(data.eventTypes.rows, "eventType"), "eventType", "event-type", (t) => h("span", { class: "mono" }, t))),
      card(
        "Busiest campaigns",
        list("top-campaigns", top(data.campaigns.rows, "campaignId"), "campaignId", "campaign-id", (id) => h("a", { href: `#/campaigns/${encodeURIComponent(id)}`, class: "mono" }, id)),
      ),
    );
  }

  function showQueues(stats) {
    setChildren(
      queues,
      table(
        "queues-table",
        "RabbitMQ queues",
        [["Queue", false], ["Waiting", true], ["Consumers", true]],
        stats.queues.map((q) =>
          h(
            "tr",
            { "data-queue": q.name, class: q.deadLetter ? "dead-letter-queue" : null },
            h("td", { class: "mono" }, q.name, q.deadLetter ? h("span", { class: "badge" }, "dead letters") : null),
            h("td", { class: "num messages" }, number.format(q.messages)),
            h("td", { class: ["num consumers", q.consumers === 0 && !q.deadLetter ? "warn" : null] }, number.format(q.consumers)),
          ),
        ),
      ),
    );
  }

  // --- live counters --------------------------------------------------------------------
  const opened = Date.now();
  const seen = new Set();
  const counts = Object.fromEntries(STATUSES.map((s) => [s.value, 0]));
  const counters = Object.fromEntries(
    STATUSES.map((s) => [s.value, h("span", { class: "kpi-value", "aria-live": "off" }, "0")]),
  );
  setChildren(
    live,
    STATUSES.map((s) => h("div", { class: "kpi", id: `live-${s.value.toLowerCase()}`, "data-status": s.value }, counters[s.value], h("span", { class: "kpi-label" }, s.label))),
  );

  const feed = startDeliveryFeed({
    ws: ctx.ws,
    onUpdate(u) {
      // The poll fallback reads back recent deliveries: count each change once, and only
      // those made since the page opened.
      const key = `${u.id}|${u.status}|${u.at}`;
      if (seen.has(key) || Date.parse(u.at) < opened || counts[u.status] === undefined) return;
      seen.add(key);
      counts[u.status] += 1;
      counters[u.status].textContent = number.format(counts[u.status]);
    },
    onState(s) {
      liveState.dataset.state = s.state;
      if (s.state === "streaming") liveState.textContent = `Streaming since ${new Date(opened).toLocaleTimeString()}: each status change counts once.`;
      else if (s.state === "polling") liveState.textContent = `Checking for changes every ${s.seconds} s.`;
      else if (s.state === "stopped") liveState.textContent = "Live counting has stopped.";
      else liveState.textContent = "Connecting to the delivery stream…";
    },
  });

  load();
  return () => {
    disposed = true;
    loading?.abort();
    feed.stop();
    charts.forEach((c) => c.destroy());
  };
}
