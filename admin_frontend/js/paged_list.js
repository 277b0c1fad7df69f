// A table read page by page from a connection (`edges { node }` and `pageInfo`), with a
// "Load more" button, a count under it, an empty state, and an error banner with a retry.

import { h, setChildren, spinner, withProgress } from "./dom.js";
import { setBanner } from "./errors.js";

/**
 * The parts of a paged table and its loader. `fetchPage(after)` returns the connection;
 * `row(node)` makes a <tr>; `emptyContent()` is what shows when there is nothing;
 * `noun` is [one, many] for the count ("recipient", "recipients").
 * Returns `{ parts: [banner, tableWrap, empty, foot], load, dispose }`; `load()` starts again
 * from the first page.
 */
export function pagedList({ tableWrap, body, columns, loading, fetchPage, row, emptyContent, noun, moreId }) {
  let cursor = null;
  let shown = 0;
  let seq = 0;
  const banner = h("div", { class: "banner-slot", hidden: true });
  const empty = h("div", { hidden: true });
  const status = h("p", { class: "list-status", "aria-live": "polite" });
  const more = h("button", { type: "button", class: "btn", hidden: true, id: moreId }, "Load more");

  async function load({ append = false } = {}) {
    const mine = ++seq;
    if (!append) {
      cursor = null;
      shown = 0;
      tableWrap.hidden = false;
      empty.hidden = true;
      setChildren(body, h("tr", {}, h("td", { colspan: String(columns) }, spinner(loading))));
    }
    setBanner(banner, null);
    let page;
    try {
      page = await fetchPage(append ? cursor : null);
    } catch (error) {
      if (mine !== seq) return;
      if (!append) setChildren(body);
      setBanner(banner, error, { retry: () => load({ append }) });
      return;
    }
    if (mine !== seq) return;
    if (!append) setChildren(body);
    for (const { node } of page.edges) body.append(row(node));
    shown += page.edges.length;
    cursor = page.pageInfo.endCursor;
    more.hidden = !page.pageInfo.hasNextPage;
    tableWrap.hidden = !shown;
    empty.hidden = Boolean(shown);
    setChildren(empty, shown ? null : emptyContent());
    status.textContent = shown ? `Showing ${shown} ${shown === 1 ? noun[0] : noun[1]}${page.pageInfo.hasNextPage ? "; there are more" : ""}.` : "";
  }

  more.addEventListener("click", () => withProgress(more, "Loading…", () => load({ append: true })));
  return {
    parts: [banner, tableWrap, empty, h("div", { class: "list-foot" }, status, more)],
    banner,
    load,
    /** Drop what a request still running would bring. */
    dispose: () => seq++,
  };
}
