// Campaigns: the list, filtered by status and searched by name, newest first, with cursor
// paging. The filters live in the URL (`?status=SCHEDULED,PAUSED&q=weekly`), so a filtered
// view can be shared; each row opens the campaign's own screen.

import { graphql } from "../api.js";
import { CAMPAIGN_STATUSES, buildQuery, campaignBadge, channelLabel, debounce, emptyState, h, pageTitle, setChildren, withProgress } from "../dom.js";
import { pagedTable } from "../paged.js";
import { describeSchedule, formatInZone, fromNow } from "../schedule.js";

const PAGE = 20;
const LIST = `query Campaigns($filter: CampaignFilter, $first: Int!, $after: String) {
  campaigns(filter: $filter, first: $first, after: $after) {
    edges { node {
      id name status templateSlug channels nextRunAt runsStarted createdAt
      audience { allUsers topics size }
      schedule { at cron timezone everySeconds endAt maxRuns }
    } }
    pageInfo { hasNextPage endCursor }
  }
}`;

export function audienceWords(audience) {
  if (audience.allUsers) return "All users";
  if (audience.topics?.length) return `Topic${audience.topics.length === 1 ? "" : "s"} ${audience.topics.join(", ")}`;
  const size = audience.size ?? 0;
  return `${size.toLocaleString()} user${size === 1 ? "" : "s"}`;
}

/** The next run, while the campaign is active (a paused one keeps its old time in the API). */
export function upcomingRun(campaign) {
  return ["SCHEDULED", "RUNNING"].includes(campaign.status) ? campaign.nextRunAt : null;
}

/** "Mon, Jun 2, 09:00 GMT+3 · in 3 days" as a <time>, or a dash. */
export function nextRunCell(campaign) {
  if (!upcomingRun(campaign)) return h("span", { class: "muted" }, campaign.status === "PAUSED" ? "Paused" : "—");
  const zone = campaign.schedule.cron ? campaign.schedule.timezone : undefined;
  return h(
    "span",
    {},
    h("time", { datetime: campaign.nextRunAt }, formatInZone(campaign.nextRunAt, zone)),
    h("span", { class: "muted block" }, fromNow(campaign.nextRunAt)),
  );
}

export function render(root, { query }) {

  const known = new Set(CAMPAIGN_STATUSES.map((s) => s.value));
  const chosen = new Set((query.status || "").split(",").filter((s) => known.has(s)));

  // --- filters --------------------------------------------------------------------------
  const statusBoxes = CAMPAIGN_STATUSES.map(({ value, label }) => {
    const input = h("input", { type: "checkbox", value, id: `campaign-status-${value}`, checked: chosen.has(value) });
    input.addEventListener("change", () => {
      if (input.checked) chosen.add(value);
      else chosen.delete(value);
      applyFilters();
    });
    return h("label", { class: "toggle", for: input.id }, input, label);
  });
  const search = h("input", { id: "campaign-search", type: "search", value: query.q || "", placeholder: "Search by name", autocomplete: "off", "aria-label": "Search campaigns by name" });
  const clearButton = h("button", { type: "button", class: "btn ghost small", id: "campaign-filters-clear" }, "Clear filters");
  const filters = h(
    "div",
    { class: "card filters campaign-filters", role: "search", "aria-label": "Filter campaigns" },
    h("div", { class: "field" }, h("label", { for: "campaign-search" }, "Name"), search),
    h(
      "fieldset",
      { class: "status-filter" },
      h("legend", {}, "Status"),
      h("div", { class: "toggles" }, statusBoxes),
    ),
    clearButton,
  );

  // --- the list -------------------------------------------------------------------------
  const banner = h("div", { class: "banner-slot", hidden: true });
  const body = h("tbody");
  const table = h(
    "table",
    { class: "table", id: "campaigns-table" },
    h("caption", { class: "visually-hidden" }, "Campaigns, newest first."),
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        h("th", { scope: "col" }, "Name"),
        h("th", { scope: "col" }, "Status"),
        h("th", { scope: "col" }, "Schedule"),
        h("th", { scope: "col" }, "Next run"),
        h("th", { scope: "col", class: "num" }, "Runs"),
        h("th", { scope: "col", class: "optional" }, "Audience"),
        h("th", { scope: "col", class: "optional" }, "Template"),
      ),
    ),
    body,
  );
  const tableWrap = h("div", { class: "table-wrap" }, table);
  const empty = h("div", { hidden: true });
  const status = h("p", { class: "list-status", "aria-live": "polite" });
  const more = h("button", { type: "button", class: "btn", id: "campaigns-more", hidden: true }, "Load more");
  const refreshButton = h("button", { type: "button", class: "btn small", id: "campaigns-refresh" }, "Refresh");

  setChildren(
    root,
    h("div", { class: "page-head" }, pageTitle("Campaigns"), h("div", { class: "head-actions" }, refreshButton, h("a", { class: "btn primary", href: "#/send?when=recurring", id: "new-campaign" }, "New campaign"))),
    filters,
    banner,
    tableWrap,
    empty,
    h("div", { class: "list-foot" }, status, more),
  );

  function filter() {
    const value = {};
    if (chosen.size) value.statuses = CAMPAIGN_STATUSES.map((s) => s.value).filter((s) => chosen.has(s));
    if (search.value.trim()) value.search = search.value.trim();
    return Object.keys(value).length ? value : null;
  }

  function applyFilters() {
    const f = filter();
    // Keep the URL in step without leaving the screen (a new hash would re-render and lose focus).
    history.replaceState(null, "", `#/campaigns${buildQuery({ status: f?.statuses?.join(","), q: f?.search })}`);
    load();
  }

  const searchLater = debounce(applyFilters, 300);
  search.addEventListener("input", searchLater);
  search.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      searchLater.cancel();
      applyFilters();
    }
  });
  clearButton.addEventListener("click", () => {
    chosen.clear();
    search.value = "";
    filters.querySelectorAll("input[type=checkbox]").forEach((box) => (box.checked = false));
    applyFilters();
    search.focus();
  });

  const list = pagedTable({
    body,
    tableWrap,
    empty,
    more,
    banner,
    columns: 7,
    loading: "Loading campaigns…",
    fetch: async (after) => (await graphql(LIST, { filter: filter(), first: PAGE, after })).campaigns,
    row,
    done({ shown, hasMore }) {
      const f = filter();
      clearButton.hidden = !f;
      if (!shown) {
        setChildren(
          empty,
          f
            ? emptyState("No campaigns match these filters.", "Choose other statuses or change the name you searched for.", h("button", { type: "button", class: "btn", onclick: () => clearButton.click() }, "Clear filters"))
            : emptyState("No campaigns yet.", "A campaign sends a template to a list of users or to everyone, now, at a time, or on a schedule.", h("a", { class: "btn primary", href: "#/send?when=recurring" }, "Plan a campaign")),
        );
        status.textContent = f ? "No campaigns match." : "";
      } else {
        status.textContent = `Showing ${shown} campaign${shown === 1 ? "" : "s"}${hasMore ? "; there are more" : ""}.`;
      }
    },
  });
  const load = list.load;

  function row(c) {
    return h(
      "tr",
      { "data-campaign-id": c.id, "data-status": c.status },
      h("td", {}, h("a", { class: "campaign-link", href: `#/campaigns/${encodeURIComponent(c.id)}` }, c.name)),
      h("td", {}, campaignBadge(c.status)),
      h("td", { class: "schedule-words" }, describeSchedule(c.schedule, { status: c.status })),
      h("td", { class: "next-run" }, nextRunCell(c)),
      h("td", { class: "num" }, String(c.runsStarted), c.schedule.maxRuns ? h("span", { class: "muted" }, ` of ${c.schedule.maxRuns}`) : null),
      h("td", { class: "optional" }, audienceWords(c.audience)),
      h("td", { class: "optional" }, h("span", { class: "mono" }, c.templateSlug), h("span", { class: "muted block" }, c.channels.map(channelLabel).join(", "))),
    );
  }

  refreshButton.addEventListener("click", () => withProgress(refreshButton, "Refreshing…", () => load()));
  load();
  return () => {
    list.stop();
    searchLater.cancel();
  };
}
