// A table filled a page at a time from a cursor connection, with "Load more": the lists of
// campaigns, deliveries and topics. A newer load wins over one still running.

import { h, setChildren, spinner, withProgress } from "./dom.js";
import { setBanner } from "./errors.js";

/**
 * `fetch(after)` returns a connection (`edges { node }`, `pageInfo`); `row(node)` makes its
 * table row; `done({shown, hasMore})` runs after each page, to fill the status line and, when
 * nothing is shown, the `empty` slot (which is shown in place of the table).
 * Returns `load({append})` and `stop()`, which makes a load still running do nothing.
 */
export function pagedTable({ body, tableWrap, empty, more, banner, columns, loading, fetch, row, done }) {
  let cursor = null;
  let shown = 0;
  let seq = 0;

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
      page = await fetch(append ? cursor : null);
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
    if (shown) setChildren(empty);
    done({ shown, hasMore: page.pageInfo.hasNextPage });
  }

  more.addEventListener("click", () => withProgress(more, "Loading…", () => load({ append: true })));
  return { load, stop: () => seq++ };
}
