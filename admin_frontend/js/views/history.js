// History: deliveries with filters and cursor paging, and a drawer with one delivery's status
// timeline and attempts. The filters live in the URL, so a filtered view can be shared.

import { graphql } from "../api.js";
import { CHANNELS, STATUSES, buildQuery, channelLabel, emptyState, formatDateTime, fromLocalInput, h, pageTitle, setChildren, spinner, statusBadge, toLocalInput, withProgress } from "../dom.js";
import { describeError } from "../errors.js";
import { pagedTable } from "../paged.js";

const PAGE = 25;
// Everything the table and the drawer show.
const DELIVERY_FIELDS = `
  id eventId eventType campaignId userId channel status templateSlug locale subject title
  providerMessageId createdAt updatedAt
  timeline { status at reason }
  attempts { number at provider error }
  engagements { kind at url }
`;
const LIST = `query Deliveries($filter: DeliveryFilter, $first: Int!, $after: String) {
  deliveries(filter: $filter, first: $first, after: $after) {
    edges { node { ${DELIVERY_FIELDS} } }
    pageInfo { hasNextPage endCursor }
  }
}`;
const EVENT = `query Event($id: ID!) { event(id: $id) { id type deliveries { id userId channel status } } }`;
const USER_RUNS = `query DeliveryRuns($filter: WorkflowRunFilter) {
  workflowRuns(filter: $filter, first: 20) { edges { node { id } } }
}`;

const ENGAGEMENT_LABELS = { OPENED: "Opened", CLICKED: "Clicked" };

/** A delivery's status changes and its opens and clicks (email tracking), oldest first. */
function timelineEntries(d) {
  const changes = d.timeline.map((t) => ({ ...t, order: 0 }));
  const events = (d.engagements || []).map((e) => ({ ...e, order: 1 }));
  // Stable: a status change and an open at the same instant keep the change first.
  return [...changes, ...events].sort((a, b) => Date.parse(a.at) - Date.parse(b.at) || a.order - b.order);
}

function timelineItem(entry) {
  if (!entry.kind) {
    return h("li", { "data-status": entry.status }, statusBadge(entry.status), h("time", { datetime: entry.at }, formatDateTime(entry.at)), entry.reason ? h("p", { class: "muted" }, entry.reason) : null);
  }
  // An open or click is an event, not a status: the delivery's status does not change.
  return h(
    "li",
    { "data-engagement": entry.kind },
    h("span", { class: `badge engagement-${entry.kind.toLowerCase()}` }, ENGAGEMENT_LABELS[entry.kind] ?? entry.kind),
    h("time", { datetime: entry.at }, formatDateTime(entry.at)),
    entry.url ? h("p", { class: "muted mono" }, entry.url) : null,
  );
}

/** The workflow run whose send step made delivery `d`, if any (its recent runs for the user). */
async function runOfDelivery(d) {
  const ids = (await graphql(USER_RUNS, { filter: { userId: d.userId, eventType: d.eventType } })).workflowRuns.edges.map((e) => e.node.id);
  if (!ids.length) return null;
  const vars = ids.map((_, i) => `$r${i}: ID!`).join(", ");
  const fields = ids.map((_, i) => `r${i}: workflowRun(id: $r${i}) { id status steps { path name outcome } }`).join("\n");
  const data = await graphql(`query DeliveryRunSteps(${vars}) {\n${fields}\n}`, Object.fromEntries(ids.map((id, i) => [`r${i}`, id])));
  for (const run of Object.values(data)) {
    const step = run?.steps?.find((s) => Object.values(s.outcome?.deliveries || {}).includes(d.id));
    if (step) return { run, step };
  }
  return null;
}

const TEXT_FILTERS = [
  ["userId", "User id"],
  ["eventId", "Event id"],
  ["campaignId", "Campaign id"],
];

export function render(root, { query, ctx }) {

  // --- filters --------------------------------------------------------------------------
  const inputs = {};
  const filterFields = TEXT_FILTERS.map(([key, label]) => {
    inputs[key] = h("input", { id: `filter-${key}`, value: query[key] || "", autocomplete: "off", spellcheck: "false" });
    return h("div", { class: "field" }, h("label", { for: `filter-${key}` }, label), inputs[key]);
  });
  inputs.channel = h("select", { id: "filter-channel" }, h("option", { value: "" }, "Any channel"), CHANNELS.map((c) => h("option", { value: c.value, selected: query.channel === c.value }, c.label)));
  inputs.status = h("select", { id: "filter-status" }, h("option", { value: "" }, "Any status"), STATUSES.map((s) => h("option", { value: s.value, selected: query.status === s.value }, s.label)));
  inputs.from = h("input", { id: "filter-from", type: "datetime-local", value: toLocalInput(query.from) });
  inputs.to = h("input", { id: "filter-to", type: "datetime-local", value: toLocalInput(query.to) });
  const filtersForm = h(
    "form",
    { class: "card filters", id: "history-filters", role: "search", "aria-label": "Filter deliveries", novalidate: true },
    h(
      "div",
      { class: "filter-grid" },
      filterFields,
      h("div", { class: "field" }, h("label", { for: "filter-channel" }, "Channel"), inputs.channel),
      h("div", { class: "field" }, h("label", { for: "filter-status" }, "Status"), inputs.status),
      h("div", { class: "field" }, h("label", { for: "filter-from" }, "From"), inputs.from),
      h("div", { class: "field" }, h("label", { for: "filter-to" }, "Until"), inputs.to),
    ),
    h(
      "div",
      { class: "actions" },
      h("button", { type: "submit", class: "btn primary" }, "Apply filters"),
      h("a", { class: "btn ghost", href: "#/history" }, "Clear"),
      h("span", { class: "help" }, "Times are in your time zone."),
    ),
  );
  filtersForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const params = {};
    for (const [key] of TEXT_FILTERS) params[key] = inputs[key].value.trim();
    params.channel = inputs.channel.value;
    params.status = inputs.status.value;
    params.from = fromLocalInput(inputs.from.value);
    params.to = fromLocalInput(inputs.to.value);
    ctx.navigate(`#/history${buildQuery(params)}`);
  });

  // The filters come from the URL, which people can edit: drop what the API would refuse.
  const filter = {};
  const ignored = [];
  for (const key of ["userId", "eventId", "campaignId", "channel", "status", "from", "to"]) {
    if (!query[key]) continue;
    const valid =
      key === "from" || key === "to"
        ? !Number.isNaN(new Date(query[key]).getTime())
        : key === "channel"
          ? CHANNELS.some((c) => c.value === query[key])
          : key === "status"
            ? STATUSES.some((st) => st.value === query[key])
            : true;
    if (valid) filter[key] = key === "from" || key === "to" ? new Date(query[key]).toISOString() : query[key];
    else ignored.push(key);
  }
  const filtered = Object.keys(filter).length > 0;

  // --- the list -------------------------------------------------------------------------
  const banner = h("div", { class: "banner-slot", hidden: true });
  const body = h("tbody");
  const table = h(
    "table",
    { class: "table clickable", id: "history-table" },
    h("caption", { class: "visually-hidden" }, "Deliveries, newest first. Open one to see its timeline."),
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        h("th", { scope: "col" }, "Created"),
        h("th", { scope: "col" }, "Recipient"),
        h("th", { scope: "col" }, "Event"),
        h("th", { scope: "col" }, "Channel"),
        h("th", { scope: "col" }, "Status"),
        h("th", { scope: "col", class: "optional" }, "Message"),
      ),
    ),
    body,
  );
  const tableWrap = h("div", { class: "table-wrap" }, table);
  const empty = h("div", { hidden: true });
  const status = h("p", { class: "list-status", "aria-live": "polite" });
  const more = h("button", { type: "button", class: "btn", hidden: true }, "Load more");
  const refresh = h("button", { type: "button", class: "btn small" }, "Refresh");
  const drawerSlot = h("div");

  setChildren(
    root,
    h("div", { class: "page-head" }, pageTitle("History"), refresh),
    filtersForm,
    ignored.length ? h("div", { class: "alert alert-warning", role: "status" }, `Ignored filters that are not valid: ${ignored.join(", ")}.`) : null,
    banner,
    tableWrap,
    empty,
    h("div", { class: "list-foot" }, status, more),
    drawerSlot,
  );

  const list = pagedTable({
    body,
    tableWrap,
    empty,
    more,
    banner,
    columns: 6,
    loading: "Loading deliveries…",
    fetch: async (after) => (await graphql(LIST, { filter: filtered ? filter : null, first: PAGE, after })).deliveries,
    row,
    done({ shown, hasMore }) {
      if (!shown) {
        setChildren(
          empty,
          filtered
            ? emptyState("No deliveries match these filters.", "Widen the time range or clear a filter. A message just sent may take a moment to appear.", h("a", { class: "btn", href: "#/history" }, "Clear filters"))
            : emptyState("Nothing has been delivered yet.", "Every message Herald sends, to every recipient and channel, will be listed here.", h("a", { class: "btn primary", href: "#/send" }, "Send a message")),
        );
        status.textContent = "";
      } else {
        status.textContent = `Showing ${shown} deliver${shown === 1 ? "y" : "ies"}${hasMore ? "; there are more" : ""}.`;
      }
    },
  });
  const load = list.load;

  function row(d) {
    const open = h("button", { type: "button", class: "link", "aria-label": `Open the delivery to ${d.userId} by ${channelLabel(d.channel)}, ${formatDateTime(d.createdAt)}` }, formatDateTime(d.createdAt));
    const tr = h(
      "tr",
      { "data-delivery-id": d.id, "data-event-id": d.eventId, "data-status": d.status },
      h("td", {}, open),
      h("td", { class: "mono" }, d.userId),
      h("td", {}, d.eventType, d.templateSlug ? h("div", { class: "muted" }, d.templateSlug) : null),
      h("td", {}, channelLabel(d.channel)),
      h("td", {}, statusBadge(d.status)),
      h("td", { class: "optional truncate" }, d.subject || d.title || ""),
    );
    open.addEventListener("click", () => openDrawer(d, open));
    tr.addEventListener("click", (event) => {
      if (event.target === open) return;
      openDrawer(d, open);
    });
    return tr;
  }

  // --- the drawer -----------------------------------------------------------------------
  let closeDrawer = null;

  function openDrawer(d, opener) {
    closeDrawer?.();
    const title = h("h2", { id: "drawer-title", tabindex: "-1" }, `${channelLabel(d.channel)} to ${d.userId}`);
    const closeButton = h("button", { type: "button", class: "btn ghost small", "aria-label": "Close details" }, "✕");
    const eventBox = h("div", {}, spinner("Loading the event…"));
    const runBox = h("div", { id: "delivery-run", hidden: true });
    const facts = [
      ["Status", statusBadge(d.status)],
      ["Delivery id", h("code", {}, d.id)],
      ["Event", h("span", {}, d.eventType, " · ", h("a", { href: `#/history?eventId=${encodeURIComponent(d.eventId)}` }, h("code", {}, d.eventId)))],
      ["Campaign", d.campaignId ? h("a", { href: `#/history?campaignId=${encodeURIComponent(d.campaignId)}` }, d.campaignId) : "—"],
      ["Recipient", h("a", { href: `#/history?userId=${encodeURIComponent(d.userId)}` }, d.userId)],
      ["Template", d.templateSlug ? h("a", { href: `#/templates/edit/${encodeURIComponent(d.templateSlug)}` }, d.templateSlug) : "—"],
      ["Locale", d.locale || "—"],
      ["Subject", d.subject || "—"],
      ["Title", d.title || "—"],
      ["Provider's id", d.providerMessageId ? h("code", {}, d.providerMessageId) : "—"],
      ["Created", formatDateTime(d.createdAt)],
      ["Last change", formatDateTime(d.updatedAt)],
    ];
    const drawer = h(
      "aside",
      { class: "drawer", id: "delivery-drawer", role: "dialog", "aria-modal": "true", "aria-labelledby": "drawer-title" },
      h("div", { class: "drawer-head" }, title, closeButton),
      h(
        "div",
        { class: "drawer-body" },
        h("dl", { class: "facts" }, facts.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
        h("h3", {}, "Timeline"),
        d.timeline.length
          ? h("ol", { class: "timeline", id: "delivery-timeline" }, timelineEntries(d).map(timelineItem))
          : h("p", { class: "muted" }, "No status changes recorded."),
        h("h3", {}, "Attempts"),
        d.attempts.length
          ? h(
              "table",
              { class: "table compact", id: "delivery-attempts" },
              h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "#"), h("th", { scope: "col" }, "When"), h("th", { scope: "col" }, "Provider"), h("th", { scope: "col" }, "Result"))),
              h(
                "tbody",
                {},
                d.attempts.map((a) => h("tr", {}, h("td", {}, String(a.number)), h("td", {}, formatDateTime(a.at)), h("td", {}, a.provider || "—"), h("td", { class: a.error ? "text-error" : "text-ok" }, a.error || "Delivered"))),
              ),
            )
          : h("p", { class: "muted" }, "Not attempted yet."),
        runBox,
        h("h3", {}, "The whole event"),
        eventBox,
      ),
    );
    const backdrop = h("div", { class: "drawer-backdrop" });
    const onKey = (event) => {
      if (event.key === "Escape") close();
      if (event.key === "Tab") {
        // Keep focus inside the drawer while it is open.
        const focusable = [...drawer.querySelectorAll("a[href], button, [tabindex='0']")];
        if (!focusable.length) return;
        const first = focusable[0];
        const last = focusable[focusable.length - 1];
        if (event.shiftKey && document.activeElement === first) {
          event.preventDefault();
          last.focus();
        } else if (!event.shiftKey && document.activeElement === last) {
          event.preventDefault();
          first.focus();
        }
      }
    };
    function close() {
      document.removeEventListener("keydown", onKey);
      drawer.remove();
      backdrop.remove();
      closeDrawer = null;
      if (opener.isConnected) opener.focus();
    }
    closeButton.addEventListener("click", close);
    backdrop.addEventListener("click", close);
    drawer.addEventListener("click", (event) => {
      // Links inside navigate away; the drawer goes with the view.
      if (event.target.closest("a[href]")) close();
    });
    document.addEventListener("keydown", onKey);
    setChildren(drawerSlot, backdrop, drawer);
    closeDrawer = close;
    title.focus();

    runOfDelivery(d)
      .then((found) => {
        if (!found || !drawer.isConnected) return;
        runBox.hidden = false;
        setChildren(
          runBox,
          h("h3", {}, "Workflow run"),
          h("p", {}, "Sent by step ", h("code", {}, found.step.name), ` of a run (${found.run.status}): `, h("a", { id: "delivery-run-link", href: `#/workflow-runs/${encodeURIComponent(found.run.id)}` }, "its timeline")),
        );
      })
      .catch((error) => {
        // Only admins and managers may list runs: for others the drawer goes without this section.
        if (!drawer.isConnected || error.code === "FORBIDDEN") return;
        runBox.hidden = false;
        setChildren(runBox, h("h3", {}, "Workflow run"), h("p", { class: "field-error" }, describeError(error)));
      });

    graphql(EVENT, { id: d.eventId })
      .then((data) => {
        if (!drawer.isConnected) return;
        const ev = data.event;
        if (!ev || !ev.deliveries.length) {
          setChildren(eventBox, h("p", { class: "muted" }, "No other deliveries recorded for this event."));
          return;
        }
        setChildren(
          eventBox,
          h("p", { class: "help" }, `${ev.deliveries.length} deliver${ev.deliveries.length === 1 ? "y" : "ies"} for event ${ev.type ?? ""}:`),
          h(
            "ul",
            { class: "event-deliveries" },
            ev.deliveries.map((x) => h("li", { class: x.id === d.id ? "current" : "" }, statusBadge(x.status), ` ${channelLabel(x.channel)} to `, h("span", { class: "mono" }, x.userId))),
          ),
        );
      })
      .catch((error) => {
        if (drawer.isConnected) setChildren(eventBox, h("p", { class: "field-error" }, describeError(error)));
      });
  }

  refresh.addEventListener("click", () => withProgress(refresh, "Refreshing…", () => load()));
  load();
  return () => {
    list.stop();
    closeDrawer?.();
  };
}
