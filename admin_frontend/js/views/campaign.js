// One campaign: its schedule in words, the next run, what it sends to whom, its runs with
// delivery counts per channel (and a chart of the runs), and pause, resume, cancel, an extra
// run now, and a test send to one user. While something is moving (a run in progress,
// deliveries queued, a run about to fire) the screen refreshes itself.

import { ERROR_FIELDS, graphql, unwrap } from "../api.js";
import { openDialog } from "../dialog.js";
import { STATUSES, campaignBadge, channelLabel, emptyState, formatDateTime, h, localTimeZone, pageTitle, setChildren, spinner, svg, withProgress } from "../dom.js";
import { ApiError, describeError, errorBanner, showFieldError } from "../errors.js";
import { cronWords, describeSchedule, formatInZone, fromNow } from "../schedule.js";
import { audienceWords, upcomingRun } from "./campaigns.js";

const RUN_FIELDS = "id kind status scheduledFor startedAt finishedAt recipients eventId testUserId counts { channel status count } engagement { opens uniqueOpens clicks uniqueClicks }";
const CAMPAIGN = `query Campaign($id: ID!) {
  campaign(id: $id) {
    id name status category templateSlug channels locale payload nextRunAt runsStarted createdBy createdAt updatedAt
    audience { userIds allUsers topics size }
    schedule { at cron timezone everySeconds endAt maxRuns description }
    runs { ${RUN_FIELDS} }
  }
}`;
const CHANGE = (name) => `mutation ${name[0].toUpperCase()}${name.slice(1)}($id: ID!) {
  ${name}(id: $id) { __typename ... on Campaign { id status nextRunAt } ${ERROR_FIELDS} }
}`;
const SEND_NOW = `mutation SendCampaignNow($id: ID!, $testUserId: ID) {
  sendCampaignNow(id: $id, testUserId: $testUserId) { __typename ... on CampaignRun { id kind status } ${ERROR_FIELDS} }
}`;

// Delivery statuses, in the order a bar stacks them, with their colours.
const SEGMENTS = [
  { status: "SENT", color: "#1a7f37" },
  { status: "DELIVERED", color: "#0e5a27" },
  { status: "SKIPPED", color: "#a0a7b4" },
  { status: "QUEUED", color: "#8da0ec" },
  { status: "SENDING", color: "#3554d1" },
  { status: "FAILED", color: "#d39b00" },
  { status: "DEAD", color: "#b42318" },
];
const IN_FLIGHT = new Set(["QUEUED", "SENDING", "FAILED"]);
const statusLabel = (status) => STATUSES.find((s) => s.value === status)?.label ?? status;

function runTitle(run) {
  if (run.kind === "TEST") return h("span", {}, "Test to ", h("span", { class: "mono" }, run.testUserId ?? "?"));
  return run.kind === "MANUAL" ? "Extra run" : "Scheduled run";
}

function totals(counts) {
  const by = {};
  for (const c of counts) by[c.status] = (by[c.status] || 0) + c.count;
  return by;
}

/** A horizontal stacked bar (decorative: the numbers are next to it). */
function stackedBar(by, total, width = 160) {
  let x = 0;
  const rects = [];
  for (const { status, color } of SEGMENTS) {
    const n = by[status] || 0;
    if (!n) continue;
    const w = (n / total) * width;
    rects.push(svg("rect", { x: x.toFixed(2), y: 0, width: Math.max(w, 1).toFixed(2), height: 10, fill: color }));
    x += w;
  }
  return svg("svg", { class: "bar", viewBox: `0 0 ${width} 10`, width, height: 10, "aria-hidden": "true", preserveAspectRatio: "none" }, svg("rect", { x: 0, y: 0, width, height: 10, fill: "#eef0f4" }), rects);
}

/** Per channel: a bar and the counts in words ("2 sent · 1 skipped"). */
function channelCounts(run) {
  if (!run.counts.length) return h("span", { class: "muted" }, run.status === "RUNNING" ? "No deliveries yet…" : "No deliveries");
  const channels = [...new Set(run.counts.map((c) => c.channel))];
  return h(
    "ul",
    { class: "channel-counts" },
    channels.map((channel) => {
      const by = totals(run.counts.filter((c) => c.channel === channel));
      const total = Object.values(by).reduce((a, b) => a + b, 0);
      const numbers = SEGMENTS.filter(({ status }) => by[status]).map(({ status, color }) =>
        h("span", { class: "count", "data-status": status, "data-count": String(by[status]) }, h("span", { class: "swatch", style: `background:${color}`, "aria-hidden": "true" }), `${by[status]} ${statusLabel(status).toLowerCase()}`),
      );
      return h("li", { "data-channel": channel }, h("span", { class: "channel-name" }, channelLabel(channel)), stackedBar(by, total), h("span", { class: "counts" }, numbers));
    }),
  );
}

/** Opens and clicks of a run's emails (email tracking), each with how many emails had one. */
function engagementCell(run) {
  const e = run.engagement;
  const attrs = { class: "engagement", "data-opens": String(e.opens), "data-unique-opens": String(e.uniqueOpens), "data-clicks": String(e.clicks), "data-unique-clicks": String(e.uniqueClicks) };
  if (!e.opens && !e.clicks) return h("td", attrs, h("span", { class: "muted" }, "—"));
  const plural = (n, word) => `${n.toLocaleString()} ${word}${n === 1 ? "" : "s"}`;
  return h(
    "td",
    attrs,
    h("span", { class: "block" }, `${plural(e.opens, "open")} (${e.uniqueOpens.toLocaleString()} unique)`),
    h("span", { class: "block" }, `${plural(e.clicks, "click")} (${e.uniqueClicks.toLocaleString()} unique)`),
  );
}

/** Deliveries per run, oldest on the left: where the eye finds a dip or a rise of skips. */
function runsChart(runs) {
  const shown = [...runs].reverse();
  const width = 640;
  const height = 150;
  const top = 10;
  const bottom = 24;
  const left = 34;
  const plot = height - top - bottom;
  const max = Math.max(1, ...shown.map((r) => r.counts.reduce((a, c) => a + c.count, 0)));
  const slot = (width - left) / Math.max(shown.length, 1);
  const barWidth = Math.min(36, slot * 0.7);
  const gridlines = [0, 0.5, 1].map((f) => {
    const y = top + plot - f * plot;
    return [
      svg("line", { x1: left, x2: width, y1: y, y2: y, stroke: "#e3e6ec" }),
      svg("text", { x: left - 6, y: y + 4, "text-anchor": "end", class: "axis" }, String(Math.round(f * max))),
    ];
  });
  // Clock times under the columns, to the second when runs fall within the same minute.
  const minute = { hour: "2-digit", minute: "2-digit" };
  const labels = shown.map((r) => new Date(r.scheduledFor).toLocaleTimeString(undefined, minute));
  const precise = new Set(labels).size < labels.length;
  const columns = shown.map((run, i) => {
    const by = totals(run.counts);
    const x = left + i * slot + (slot - barWidth) / 2;
    let y = top + plot;
    const parts = [];
    for (const { status, color } of SEGMENTS) {
      const n = by[status] || 0;
      if (!n) continue;
      const h2 = (n / max) * plot;
      y -= h2;
      parts.push(svg("rect", { x: x.toFixed(1), y: y.toFixed(1), width: barWidth.toFixed(1), height: Math.max(h2, 1).toFixed(1), fill: color }));
    }
    const summary = SEGMENTS.filter(({ status }) => by[status]).map(({ status }) => `${by[status]} ${statusLabel(status).toLowerCase()}`).join(", ") || "no deliveries";
    const label = shown.length <= 12 ? svg("text", { x: (x + barWidth / 2).toFixed(1), y: height - 8, "text-anchor": "middle", class: "axis" }, precise ? new Date(run.scheduledFor).toLocaleTimeString() : labels[i]) : null;
    return svg("g", { "data-run-id": run.id }, svg("title", {}, `${formatDateTime(run.scheduledFor)}: ${summary}`), parts, label);
  });
  const description = `Deliveries per run for the latest ${shown.length} run${shown.length === 1 ? "" : "s"}, oldest first: ${shown
    .map((r) => `${formatDateTime(r.scheduledFor)}, ${r.counts.reduce((a, c) => a + c.count, 0)}`)
    .join("; ")}.`;
  return h(
    "figure",
    { class: "runs-chart" },
    svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": description, id: "runs-chart" }, gridlines, columns),
    h(
      "figcaption",
      { class: "legend" },
      SEGMENTS.map(({ status, color }) => h("span", {}, h("span", { class: "swatch", style: `background:${color}`, "aria-hidden": "true" }), statusLabel(status))),
    ),
  );
}

export function render(root, { params, ctx }) {
  const id = params.id;
  let disposed = false;
  let campaign = null;
  let shownJson = "";
  let timer = null;
  let lastChange = Date.now();
  let seq = 0;

  const title = pageTitle("Campaign");
  const badgeSlot = h("span", { id: "campaign-status" });
  const banner = h("div", { class: "banner-slot", hidden: true });
  const updated = h("p", { class: "help", id: "campaign-updated", "aria-live": "off" });

  const buttons = {
    pause: h("button", { type: "button", class: "btn", id: "campaign-pause" }, "Pause"),
    resume: h("button", { type: "button", class: "btn primary", id: "campaign-resume" }, "Resume"),
    sendNow: h("button", { type: "button", class: "btn", id: "campaign-send-now" }, "Send now…"),
    test: h("button", { type: "button", class: "btn", id: "campaign-test-send" }, "Test send…"),
    cancel: h("button", { type: "button", class: "btn danger-ghost", id: "campaign-cancel" }, "Cancel campaign…"),
  };
  const refreshButton = h("button", { type: "button", class: "btn small ghost", id: "campaign-refresh" }, "Refresh");
  const actionError = h("div", { id: "campaign-action-error", class: "banner-slot", hidden: true });
  const actions = h("div", { class: "actions campaign-actions", role: "group", "aria-label": "Campaign actions" }, Object.values(buttons), h("span", { class: "spacer" }), updated, refreshButton);
  const summary = h("div", { class: "campaign-summary" });
  const runsSection = h("section", { class: "campaign-runs", "aria-labelledby": "runs-title" });
  const content = h("div", { class: "campaign-body" }, h("div", { class: "card" }, actions, actionError), summary, runsSection);

  setChildren(
    root,
    h("div", { class: "page-head" }, h("a", { class: "back", href: "#/campaigns" }, "← All campaigns"), title, badgeSlot),
    banner,
    content,
  );
  setChildren(summary, spinner("Loading the campaign…"));

  // --- loading and refreshing -----------------------------------------------------------
  async function load() {
    const mine = ++seq;
    clearTimeout(timer);
    let data;
    try {
      data = await graphql(CAMPAIGN, { id });
    } catch (error) {
      if (disposed || mine !== seq) return;
      banner.hidden = false;
      setChildren(banner, errorBanner(error, { retry: load }));
      schedule(15_000);
      return;
    }
    if (disposed || mine !== seq) return;
    banner.hidden = true;
    setChildren(banner);
    if (!data.campaign) {
      setChildren(title, "Campaign not found");
      setChildren(badgeSlot);
      setChildren(content, emptyState("There is no campaign with this id.", "It may have been deleted, or the link is incomplete.", h("a", { class: "btn", href: "#/campaigns" }, "All campaigns")));
      return;
    }
    campaign = data.campaign;
    updated.textContent = `Updated ${new Date().toLocaleTimeString()}`;
    const json = JSON.stringify(campaign);
    // Re-draw only what changed, so a refresh does not move focus or scroll.
    if (json !== shownJson) {
      shownJson = json;
      lastChange = Date.now();
      show(campaign);
    }
    schedule(nextRefresh(campaign));
  }

  function nextRefresh(c) {
    // A run's deliveries reach the history a moment after its fan-out: until each recipient has
    // one per channel, or shortly after it finished, there may be more to show.
    const recording = (r) => {
      const since = r.finishedAt ? Date.now() - new Date(r.finishedAt).getTime() : Infinity;
      return since < 20_000 || (since < 10 * 60_000 && r.counts.reduce((a, x) => a + x.count, 0) < r.recipients * c.channels.length);
    };
    const moving =
      c.status === "RUNNING" ||
      c.runs.some((r) => r.status === "RUNNING" || r.counts.some((x) => IN_FLIGHT.has(x.status)) || (r.status === "COMPLETED" && recording(r)));
    if (moving) return Date.now() - lastChange < 120_000 ? 1500 : 10_000;
    if (upcomingRun(c)) {
      const wait = new Date(c.nextRunAt).getTime() - Date.now();
      if (wait < 10 * 60_000) return Math.max(1000, wait + 1500);
    }
    return null;
  }

  function schedule(delay) {
    clearTimeout(timer);
    if (delay !== null && !disposed) timer = setTimeout(load, delay);
  }

  // --- drawing --------------------------------------------------------------------------
  function show(c) {
    document.title = `${c.name} · Campaigns · Herald admin`;
    setChildren(title, c.name);
    setChildren(badgeSlot, campaignBadge(c.status));
    updateActions(c);
    setChildren(summary, facts(c));
    setChildren(runsSection, runs(c));
  }

  function updateActions(c) {
    buttons.pause.hidden = !["SCHEDULED", "RUNNING"].includes(c.status);
    buttons.resume.hidden = !["PAUSED", "DRAFT"].includes(c.status);
    setChildren(buttons.resume, c.status === "DRAFT" ? "Start" : "Resume");
    buttons.sendNow.hidden = c.status === "CANCELLED";
    buttons.test.hidden = c.status === "CANCELLED";
    buttons.cancel.hidden = ["COMPLETED", "CANCELLED"].includes(c.status);
  }

  function facts(c) {
    const s = c.schedule;
    const zone = s.cron ? s.timezone : undefined;
    const raw = s.cron ? h("span", { class: "muted block" }, h("code", {}, s.cron), ` in ${s.timezone}${cronWords(s.cron) ? "" : " (this page cannot put it in words)"}`) : null;
    const next = upcomingRun(c)
      ? h(
          "span",
          {},
          h("time", { datetime: c.nextRunAt }, formatInZone(c.nextRunAt, zone)),
          h("span", { class: "muted block" }, `${fromNow(c.nextRunAt)}${zone && zone !== localTimeZone() ? ` · ${formatInZone(c.nextRunAt)} your time` : ""}`),
        )
      : h("span", { class: "muted" }, c.status === "PAUSED" ? "None while paused" : c.status === "DRAFT" ? "None until it is started" : "None");
    const runsStarted = `${c.runsStarted}${s.maxRuns ? ` of at most ${s.maxRuns}` : ""}`;
    const ids = c.audience.userIds || [];
    const audience = c.audience.allUsers
      ? "All users"
      : h("span", {}, audienceWords(c.audience), ids.length ? h("span", { class: "muted block mono" }, ids.slice(0, 8).join(", "), ids.length > 8 ? ` and ${ids.length - 8} more` : "") : null);
    const rows = [
      ["Schedule", h("span", { id: "campaign-schedule" }, `${describeSchedule(s, { status: c.status })}.`, raw)],
      ["Next run", h("span", { id: "campaign-next-run" }, next)],
      ["Scheduled runs", h("span", { id: "campaign-runs-started" }, runsStarted)],
      ["Template", h("a", { href: `#/templates/edit/${encodeURIComponent(c.templateSlug)}`, class: "mono" }, c.templateSlug)],
      ["Channels", c.channels.map(channelLabel).join(", ")],
      ["Audience", audience],
      ["Category", h("span", { class: "mono" }, c.category)],
      ["Locale", c.locale || "Each user's own"],
      ["Created", `${formatDateTime(c.createdAt)}${c.createdBy ? ` by ${c.createdBy}` : ""}`],
      ["Last change", formatDateTime(c.updatedAt)],
      ["Deliveries", h("a", { href: `#/history?campaignId=${encodeURIComponent(c.id)}` }, "All of this campaign's deliveries in history")],
    ];
    const payload = JSON.stringify(c.payload ?? {}, null, 2);
    return h(
      "div",
      { class: "campaign-facts" },
      h("div", { class: "card" }, h("h2", {}, "Plan"), h("dl", { class: "facts" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]))),
      h("div", { class: "card" }, h("h2", {}, "Variables"), payload === "{}" ? h("p", { class: "muted" }, "No variables.") : h("pre", { class: "code-view", id: "campaign-payload" }, payload)),
    );
  }

  function runs(c) {
    const heading = h("h2", { id: "runs-title" }, "Runs", c.runs.length ? h("span", { class: "muted" }, ` · latest ${c.runs.length}`) : null);
    if (!c.runs.length) {
      const why = c.status === "DRAFT" ? "It is a draft: start it to schedule its runs." : upcomingRun(c) ? `The first run is ${fromNow(c.nextRunAt)}.` : "It has not sent anything.";
      return [heading, emptyState("No runs yet.", why)];
    }
    const table = h(
      "table",
      { class: "table runs-table", id: "runs-table" },
      h("caption", { class: "visually-hidden" }, "Runs, newest first, with their deliveries per channel."),
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          h("th", { scope: "col" }, "Run"),
          h("th", { scope: "col" }, "Status"),
          h("th", { scope: "col", class: "num" }, "Recipients"),
          h("th", { scope: "col" }, "Deliveries by channel"),
          h("th", { scope: "col" }, "Opens and clicks"),
          h("th", { scope: "col", class: "optional" }, "Finished"),
        ),
      ),
      h(
        "tbody",
        {},
        c.runs.map((run) =>
          h(
            "tr",
            { class: "run", "data-run-id": run.id, "data-kind": run.kind, "data-status": run.status },
            h(
              "td",
              {},
              h("strong", {}, runTitle(run)),
              h("span", { class: "muted block" }, h("time", { datetime: run.scheduledFor }, formatDateTime(run.scheduledFor))),
              h("a", { class: "small-link", href: `#/history?eventId=${encodeURIComponent(run.eventId)}` }, "In history →"),
            ),
            h("td", {}, campaignBadge(run.status)),
            h("td", { class: "num" }, run.recipients.toLocaleString()),
            h("td", {}, channelCounts(run)),
            engagementCell(run),
            h("td", { class: "optional" }, run.finishedAt ? formatDateTime(run.finishedAt) : h("span", { class: "muted" }, "—")),
          ),
        ),
      ),
    );
    return [heading, h("div", { class: "card chart-card" }, runsChart(c.runs)), h("div", { class: "table-wrap" }, table)];
  }

  // --- actions --------------------------------------------------------------------------
  function showActionError(error) {
    if (!error) {
      actionError.hidden = true;
      setChildren(actionError);
      return;
    }
    actionError.hidden = false;
    setChildren(actionError, errorBanner(error));
  }

  async function change(button, name, progress, done) {
    showActionError(null);
    await withProgress(button, progress, async () => {
      try {
        unwrap((await graphql(CHANGE(name), { id }))[name], "Campaign");
        ctx.toast(done);
      } catch (error) {
        if (!(error instanceof ApiError)) throw error;
        if (!disposed) showActionError(error);
      }
    });
    if (!disposed) await load();
    if (button.hidden || button.disabled) actions.querySelector("button:not([hidden])")?.focus();
    else button.focus();
  }

  buttons.pause.addEventListener("click", () => change(buttons.pause, "pauseCampaign", "Pausing…", "Paused."));
  buttons.resume.addEventListener("click", () => change(buttons.resume, "resumeCampaign", campaign?.status === "DRAFT" ? "Starting…" : "Resuming…", campaign?.status === "DRAFT" ? "Started." : "Resumed."));
  refreshButton.addEventListener("click", () => withProgress(refreshButton, "Refreshing…", load));

  buttons.cancel.addEventListener("click", () => {
    const keep = h("button", { type: "button", class: "btn" }, "Keep it");
    const confirm = h("button", { type: "button", class: "btn danger", id: "confirm-cancel" }, "Cancel campaign");
    const { close } = openDialog({
      id: "cancel-dialog",
      title: "Cancel this campaign?",
      body: [
        h("p", {}, `“${campaign.name}” will stop for good: no more runs, and a run in progress stops before its next batch of users.`),
        h("p", { class: "muted" }, "Messages already queued still go out. A cancelled campaign cannot be resumed."),
      ],
      actions: [keep, confirm],
    });
    keep.addEventListener("click", close);
    confirm.addEventListener("click", async () => {
      close();
      await change(buttons.cancel, "cancelCampaign", "Cancelling…", "Cancelled.");
    });
    keep.focus();
  });

  buttons.sendNow.addEventListener("click", () => {
    const no = h("button", { type: "button", class: "btn" }, "Not now");
    const yes = h("button", { type: "button", class: "btn primary", id: "confirm-send-now" }, "Send to everyone now");
    const who = campaign.audience.allUsers ? "every user" : audienceWords(campaign.audience).toLowerCase();
    const { close } = openDialog({
      id: "send-now-dialog",
      title: "Send an extra run now?",
      body: [h("p", {}, `This sends “${campaign.name}” to ${who} now, outside its schedule.`), h("p", { class: "muted" }, "It does not count toward the maximum number of runs.")],
      actions: [no, yes],
    });
    no.addEventListener("click", close);
    yes.addEventListener("click", async () => {
      close();
      await sendNow(buttons.sendNow, null);
    });
    no.focus();
  });

  async function sendNow(button, testUserId, onError) {
    showActionError(null);
    let ok = false;
    await withProgress(button, "Sending…", async () => {
      try {
        unwrap((await graphql(SEND_NOW, { id, testUserId })).sendCampaignNow, "CampaignRun");
        ok = true;
        ctx.toast(testUserId ? `Test sent to ${testUserId}.` : "Extra run started.");
      } catch (error) {
        if (!(error instanceof ApiError)) throw error;
        if (disposed) return;
        if (onError) onError(error);
        else showActionError(error);
      }
    });
    if (ok && !disposed) await load();
    return ok;
  }

  buttons.test.addEventListener("click", () => {
    const input = h("input", { id: "test-user-id", autocomplete: "off", spellcheck: "false", "aria-describedby": "test-user-id-help test-user-id-error" });
    const error = h("p", { id: "test-user-id-error", class: "field-error", role: "alert", hidden: true });
    const cancel = h("button", { type: "button", class: "btn" }, "Cancel");
    const submit = h("button", { type: "submit", class: "btn primary", id: "test-send-submit", form: "test-send-form" }, "Send test");
    const form = h(
      "form",
      { id: "test-send-form", novalidate: true },
      h("label", { for: "test-user-id" }, "User id"),
      input,
      h("p", { id: "test-user-id-help", class: "help" }, "One user receives this campaign's message now, through its channels, as a test. It is not a run of the schedule."),
      error,
    );
    const { close } = openDialog({ id: "test-send-dialog", title: "Test send", body: form, actions: [cancel, submit] });
    cancel.addEventListener("click", close);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      showFieldError(error, "", input);
      const user = input.value.trim();
      if (!user) {
        showFieldError(error, "Give the id of the user to send the test to.", input);
        input.focus();
        return;
      }
      const sent = await sendNow(submit, user, (problem) => {
        showFieldError(error, describeError(problem), input);
        input.focus();
      });
      if (sent) close();
    });
    input.focus();
  });

  load();
  return () => {
    disposed = true;
    seq++;
    clearTimeout(timer);
    document.querySelectorAll("#cancel-dialog, #send-now-dialog, #test-send-dialog").forEach((d) => d.close());
  };
}
