// Templates: the list with search and cursor paging.

import { graphql } from "../api.js";
import { channelLabel, debounce, emptyState, formatDateTime, h, pageTitle, setChildren, spinner, withProgress } from "../dom.js";
import { setBanner } from "../errors.js";

const PAGE = 20;
const LIST = `query Templates($first: Int!, $after: String, $search: String) {
  templates(first: $first, after: $after, search: $search) {
    edges { node { slug name description version updatedAt updatedBy content { channel locale } } }
    pageInfo { hasNextPage endCursor }
  }
}`;

export function render(root, { query }) {
  const search = h("input", {
    id: "template-search",
    type: "search",
    placeholder: "Search by slug or name",
    value: query.q || "",
    autocomplete: "off",
  });
  const banner = h("div", { class: "banner-slot", hidden: true });
  const body = h("tbody");
  const table = h(
    "table",
    { class: "table", id: "templates-table" },
    h("caption", { class: "visually-hidden" }, "Templates"),
    h(
      "thead",
      {},
      h("tr", {}, h("th", { scope: "col" }, "Template"), h("th", { scope: "col" }, "Channels and locales"), h("th", { scope: "col", class: "num" }, "Version"), h("th", { scope: "col", class: "optional" }, "Last changed")),
    ),
    body,
  );
  const tableWrap = h("div", { class: "table-wrap" }, table);
  const status = h("p", { class: "list-status", "aria-live": "polite" });
  const more = h("button", { type: "button", class: "btn", hidden: true }, "Load more");
  const empty = h("div", { hidden: true });

  setChildren(
    root,
    h("div", { class: "page-head" }, pageTitle("Templates"), h("a", { class: "btn primary", href: "#/templates/new" }, "New template")),
    h("div", { class: "toolbar" }, h("label", { for: "template-search", class: "visually-hidden" }, "Search templates"), search),
    banner,
    tableWrap,
    empty,
    h("div", { class: "list-foot" }, status, more),
  );

  let cursor = null;
  let seq = 0;
  let shown = 0;

  async function load({ append = false } = {}) {
    const mine = ++seq;
    const term = search.value.trim();
    if (!append) {
      cursor = null;
      shown = 0;
      setChildren(body, h("tr", {}, h("td", { colspan: "4" }, spinner("Loading templates…"))));
      tableWrap.hidden = false;
      empty.hidden = true;
    }
    setBanner(banner, null);
    let page;
    try {
      const data = await graphql(LIST, { first: PAGE, after: append ? cursor : null, search: term || null });
      page = data.templates;
    } catch (error) {
      if (mine !== seq) return;
      if (!append) setChildren(body);
      setBanner(banner, error, { retry: () => load({ append }) });
      return;
    }
    if (mine !== seq) return; // a newer search has started
    if (!append) setChildren(body);
    for (const { node } of page.edges) body.append(row(node));
    shown += page.edges.length;
    cursor = page.pageInfo.endCursor;
    more.hidden = !page.pageInfo.hasNextPage;
    if (shown === 0) {
      tableWrap.hidden = true;
      empty.hidden = false;
      setChildren(
        empty,
        term
          ? emptyState(`No templates match “${term}”.`, "Try another word: the search looks at slugs and names.")
          : emptyState("No templates yet.", "Templates hold the words of your messages, per channel and language.", h("a", { class: "btn primary", href: "#/templates/new" }, "Create the first template")),
      );
      status.textContent = "";
    } else {
      status.textContent = `Showing ${shown} template${shown === 1 ? "" : "s"}${page.pageInfo.hasNextPage ? "; there are more" : ""}.`;
    }
  }

  function row(template) {
    const href = `#/templates/edit/${encodeURIComponent(template.slug)}`;
    const byChannel = new Map();
    for (const c of template.content) {
      byChannel.set(c.channel, [...(byChannel.get(c.channel) || []), c.locale]);
    }
    return h(
      "tr",
      { "data-slug": template.slug },
      h("td", {}, h("a", { href, class: "row-link" }, h("strong", {}, template.name)), h("div", { class: "muted mono" }, template.slug)),
      h(
        "td",
        {},
        h(
          "ul",
          { class: "chips" },
          [...byChannel].map(([channel, locales]) => h("li", { class: "chip" }, `${channelLabel(channel)} · ${locales.join(", ")}`)),
        ),
      ),
      h("td", { class: "num" }, `v${template.version}`),
      h("td", { class: "optional" }, formatDateTime(template.updatedAt), template.updatedBy ? h("div", { class: "muted" }, `by ${template.updatedBy}`) : null),
    );
  }

  // Searching replaces the URL (so a reload keeps the search) without re-rendering the view.
  const debouncedLoad = debounce(() => {
    const term = search.value.trim();
    history.replaceState(null, "", `#/templates${term ? `?q=${encodeURIComponent(term)}` : ""}`);
    load();
  }, 250);
  search.addEventListener("input", debouncedLoad);

  more.addEventListener("click", () => withProgress(more, "Loading…", () => load({ append: true })));
  load();
  return () => {
    debouncedLoad.cancel();
    seq++;
  };
}
