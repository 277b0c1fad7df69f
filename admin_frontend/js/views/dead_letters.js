// Dead letters: deliveries that failed for good, with replay (one, or the selected ones).

import { ERROR_FIELDS, graphql, unwrap } from "../api.js";
import { channelLabel, emptyState, formatDateTime, h, pageTitle, setChildren, spinner, withProgress } from "../dom.js";
import { setBanner } from "../errors.js";

const PAGE = 50;
const LIST = `query DeadLetters($first: Int!, $after: String) {
  deadLetters(first: $first, after: $after) {
    edges { node { deliveryId eventId eventType userId channel error attempts deadAt } }
    pageInfo { hasNextPage endCursor }
  }
}`;
const RETRY = `mutation Retry($ids: [ID!]!) {
  retryDeadLetters(ids: $ids) { __typename ... on DeadLettersRetried { retried notFound } ${ERROR_FIELDS} }
}`;

export function render(root, { ctx }) {
  let disposed = false;
  let cursor = null;
  let items = [];
  const selected = new Set();

  const banner = h("div", { class: "banner-slot", hidden: true });
  const outcome = h("div", { "aria-live": "polite" });
  const body = h("tbody");
  const selectAll = h("input", { type: "checkbox", id: "select-all", "aria-label": "Select all dead letters" });
  const table = h(
    "table",
    { class: "table", id: "dead-letters-table" },
    h("caption", { class: "visually-hidden" }, "Dead letters, newest first"),
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        h("th", { scope: "col", class: "check" }, selectAll),
        h("th", { scope: "col" }, "Failed"),
        h("th", { scope: "col" }, "Recipient"),
        h("th", { scope: "col" }, "Event"),
        h("th", { scope: "col" }, "Channel"),
        h("th", { scope: "col", class: "num" }, "Tries"),
        h("th", { scope: "col", class: "optional" }, "Last error"),
        h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Actions")),
      ),
    ),
    body,
  );
  const tableWrap = h("div", { class: "table-wrap" }, table);
  const empty = h("div", { hidden: true });
  const replaySelected = h("button", { type: "button", class: "btn primary", id: "replay-selected", disabled: true }, "Replay selected");
  const more = h("button", { type: "button", class: "btn", hidden: true }, "Load more");
  const status = h("p", { class: "list-status", "aria-live": "polite" });

  setChildren(
    root,
    h("div", { class: "page-head" }, pageTitle("Dead letters"), replaySelected),
    h("p", { class: "lead" }, "Deliveries that failed on every try. Replaying sends each one again as a fresh delivery."),
    banner,
    outcome,
    tableWrap,
    empty,
    h("div", { class: "list-foot" }, status, more),
  );

  function updateSelection() {
    replaySelected.disabled = selected.size === 0;
    replaySelected.textContent = selected.size ? `Replay selected (${selected.size})` : "Replay selected";
    selectAll.checked = items.length > 0 && selected.size === items.length;
    selectAll.indeterminate = selected.size > 0 && selected.size < items.length;
  }

  selectAll.addEventListener("change", () => {
    for (const box of body.querySelectorAll("input[type=checkbox]")) {
      box.checked = selectAll.checked;
      if (selectAll.checked) selected.add(box.value);
      else selected.delete(box.value);
    }
    updateSelection();
  });

  async function load({ append = false } = {}) {
    if (!append) {
      cursor = null;
      items = [];
      selected.clear();
      tableWrap.hidden = false;
      empty.hidden = true;
      setChildren(body, h("tr", {}, h("td", { colspan: "8" }, spinner("Loading dead letters…"))));
    }
    setBanner(banner, null);
    let page;
    try {
      page = (await graphql(LIST, { first: PAGE, after: append ? cursor : null })).deadLetters;
    } catch (error) {
      if (disposed) return;
      setChildren(body);
      tableWrap.hidden = true;
      setBanner(banner, error, { retry: () => load({ append }) });
      return;
    }
    if (disposed) return;
    if (!append) setChildren(body);
    for (const { node } of page.edges) {
      items.push(node);
      body.append(row(node));
    }
    cursor = page.pageInfo.endCursor;
    more.hidden = !page.pageInfo.hasNextPage;
    if (!items.length) {
      tableWrap.hidden = true;
      empty.hidden = false;
      setChildren(empty, emptyState("No dead letters.", "Every delivery that failed for good would be listed here, ready to replay. Nothing is waiting."));
      status.textContent = "";
    } else {
      status.textContent = `${items.length} dead letter${items.length === 1 ? "" : "s"}${page.pageInfo.hasNextPage ? " shown; there are more" : ""}.`;
    }
    updateSelection();
  }

  function row(d) {
    const box = h("input", { type: "checkbox", value: d.deliveryId, "aria-label": `Select the delivery to ${d.userId}` });
    box.addEventListener("change", () => {
      if (box.checked) selected.add(d.deliveryId);
      else selected.delete(d.deliveryId);
      updateSelection();
    });
    const replay = h("button", { type: "button", class: "btn small" }, "Replay");
    replay.addEventListener("click", () => withProgress(replay, "Replaying…", () => retry([d.deliveryId])));
    return h(
      "tr",
      { "data-delivery-id": d.deliveryId },
      h("td", { class: "check" }, box),
      h("td", {}, formatDateTime(d.deadAt)),
      h("td", { class: "mono" }, d.userId),
      h("td", {}, d.eventType, h("div", {}, h("a", { class: "muted mono", href: `#/history?eventId=${encodeURIComponent(d.eventId)}` }, d.eventId.slice(0, 8)))),
      h("td", {}, channelLabel(d.channel)),
      h("td", { class: "num" }, String(d.attempts)),
      h("td", { class: "optional text-error truncate", title: d.error }, d.error),
      h("td", {}, replay),
    );
  }

  async function retry(ids) {
    setChildren(outcome);
    setBanner(banner, null);
    try {
      const result = unwrap((await graphql(RETRY, { ids })).retryDeadLetters, "DeadLettersRetried");
      const parts = [];
      if (result.retried.length) parts.push(`${result.retried.length} replayed: they are queued again and will show in history.`);
      if (result.notFound.length) parts.push(`${result.notFound.length} had already been replayed or were no longer dead letters.`);
      setChildren(outcome, h("div", { class: "alert alert-success", role: "status" }, parts.join(" ") || "Nothing to replay."));
      ctx.toast(result.retried.length ? `Replayed ${result.retried.length}.` : "Nothing replayed.", result.retried.length ? "success" : "info");
      await load();
    } catch (error) {
      setBanner(banner, error);
    }
  }

  replaySelected.addEventListener("click", async () => {
    await withProgress(replaySelected, `Replaying ${selected.size}…`, () => retry([...selected]));
    updateSelection(); // withProgress restored the label it had before the list reloaded
  });
  more.addEventListener("click", () => withProgress(more, "Loading…", () => load({ append: true })));
  load();
  return () => {
    disposed = true;
  };
}
