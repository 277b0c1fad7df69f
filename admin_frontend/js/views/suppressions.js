// Email suppressions: addresses Herald no longer emails because they bounced for good or their
// owner reported a message as spam, searched by part of the address and kind, each removable
// (behind a confirmation) so email reaches it again. Reached from the Recipients screen.

import { ERROR_FIELDS, graphql, unwrap } from "../api.js";
import { confirmDanger } from "../dialog.js";
import { buildQuery, emptyState, formatDateTime, h, pageTitle, setChildren } from "../dom.js";
import { pagedTable } from "../paged.js";

const PAGE = 25;
const LIST = `query EmailSuppressions($filter: EmailSuppressionFilter, $first: Int!, $after: String) {
  emailSuppressions(filter: $filter, first: $first, after: $after) {
    edges { node { address kind provider reason deliveryId suppressedAt } }
    pageInfo { hasNextPage endCursor }
  }
}`;
const REMOVE = `mutation RemoveEmailSuppression($address: String!) {
  removeEmailSuppression(address: $address) { __typename ... on EmailSuppressionRemoved { address } ${ERROR_FIELDS} }
}`;
const KINDS = { HARD_BOUNCE: "Hard bounce", COMPLAINT: "Spam complaint" };

function confirmRemove(item, onRemoved) {
  confirmDanger({
    id: "remove-suppression-dialog",
    title: "Remove this suppression?",
    text: `Email ${item.address} again? It was suppressed after a ${KINDS[item.kind].toLowerCase()}; if the address still does not take mail, the next bounce suppresses it again.`,
    action: "Remove",
    confirmId: "remove-suppression-confirm",
    progress: "Removing…",
    run: async () => unwrap((await graphql(REMOVE, { address: item.address })).removeEmailSuppression, "EmailSuppressionRemoved"),
    onDone: (removed) => onRemoved(removed.address),
  });
}

export function render(root, { query, ctx }) {
  const search = (query.search || "").trim();
  const kind = KINDS[query.kind] ? query.kind : "";

  const input = h("input", { id: "suppression-search", type: "search", value: search, placeholder: "Part of an address", autocomplete: "off", spellcheck: "false" });
  const kindSelect = h(
    "select",
    { id: "suppression-kind" },
    h("option", { value: "" }, "Any reason"),
    Object.entries(KINDS).map(([value, label]) => h("option", { value, selected: value === kind }, label)),
  );
  const form = h(
    "form",
    { class: "card filters", role: "search", "aria-label": "Search suppressed addresses", novalidate: true },
    h("div", { class: "field" }, h("label", { for: "suppression-search" }, "Address"), input),
    h("div", { class: "field" }, h("label", { for: "suppression-kind" }, "Reason"), kindSelect),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "btn primary" }, "Search"), search || kind ? h("a", { class: "btn ghost", href: "#/suppressions" }, "Clear") : null),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    ctx.navigate(`#/suppressions${buildQuery({ search: input.value.trim(), kind: kindSelect.value })}`);
  });

  const body = h("tbody");
  const banner = h("div", { class: "banner-slot", hidden: true });
  const empty = h("div", { hidden: true });
  const status = h("p", { class: "list-status", "aria-live": "polite" });
  const more = h("button", { type: "button", class: "btn", hidden: true, id: "suppressions-more" }, "Load more");
  const outcome = h("div", { "aria-live": "polite" });
  const head = ["Address", "Reason", "Reported by", "What the provider said", "Suppressed", ""].map((t) => h("th", { scope: "col" }, t));
  const tableWrap = h(
    "div",
    { class: "table-wrap" },
    h("table", { class: "table", id: "suppressions-table" }, h("caption", { class: "visually-hidden" }, "Suppressed email addresses, newest first."), h("thead", {}, h("tr", {}, head)), body),
  );

  function row(item) {
    const remove = h("button", { type: "button", class: "btn small", "aria-label": `Remove the suppression of ${item.address}` }, "Remove");
    remove.addEventListener("click", () =>
      confirmRemove(item, (address) => {
        setChildren(outcome, h("div", { class: "alert alert-success", role: "status" }, `${address} is no longer suppressed: email reaches it again.`));
        ctx.toast(`Removed ${address}.`);
        list.load();
      }),
    );
    return h(
      "tr",
      { "data-address": item.address },
      h("td", { class: "mono" }, item.address),
      h("td", {}, KINDS[item.kind] || item.kind),
      h("td", {}, item.provider),
      h("td", { class: "truncate", title: item.reason }, item.reason),
      h("td", {}, h("time", { datetime: item.suppressedAt }, formatDateTime(item.suppressedAt))),
      h("td", {}, remove),
    );
  }

  const list = pagedTable({
    body,
    tableWrap,
    empty,
    more,
    banner,
    columns: 6,
    loading: "Loading suppressed addresses…",
    fetch: async (after) => {
      const filter = { addressContains: search || null, kind: kind || null };
      return (await graphql(LIST, { filter, first: PAGE, after })).emailSuppressions;
    },
    row,
    done: ({ shown, hasMore }) => {
      status.textContent = shown ? `Showing ${shown} address${shown === 1 ? "" : "es"}${hasMore ? "; there are more" : ""}.` : "";
      if (shown) return;
      setChildren(
        empty,
        search || kind
          ? emptyState("No suppressed address matches.", "The search matches part of an address, in any case.", h("a", { class: "btn", href: "#/suppressions" }, "Clear the search"))
          : emptyState("No suppressed addresses.", "An address is listed here after a hard bounce or a spam complaint reported by the email provider or a bounce message."),
      );
    },
  });

  setChildren(
    root,
    h("div", { class: "page-head" }, h("a", { class: "back", href: "#/recipients" }, "← Recipients"), pageTitle("Email suppressions")),
    h("p", { class: "lead" }, "Addresses Herald no longer emails: they bounced for good, or their owner reported a message as spam. Email to them is skipped until you remove them here."),
    form,
    outcome,
    banner,
    tableWrap,
    empty,
    h("div", { class: "list-foot" }, status, more),
  );
  list.load();
  return () => list.stop();
}
