// Workflows: every event type with its current workflow version (or none) and what its steps
// are, each row opening the type's workflow editor (views/workflow.js).

import { graphql } from "../api.js";
import { emptyState, h, pageTitle, setChildren, spinner, withProgress } from "../dom.js";
import { setBanner } from "../errors.js";

const TYPES = "query WorkflowTypes { eventTypes { name description builtin } }";

// The API allows 30 aliases a query: the current workflows are asked for 20 types at a time.
const CHUNK = 20;

/** One query for the current workflow of each of `count` types, by alias. */
function workflowsQuery(count) {
  const vars = Array.from({ length: count }, (_, i) => `$t${i}: String!`).join(", ");
  const fields = Array.from({ length: count }, (_, i) => `w${i}: workflow(eventType: $t${i}) { version steps createdAt }`).join("\n");
  return `query CurrentWorkflows(${vars}) {\n${fields}\n}`;
}

/** "send → delay → branch" */
export function stepSummary(steps) {
  if (!Array.isArray(steps) || !steps.length) return "no steps";
  return steps.map((s) => s.type).join(" → ");
}

export function render(root) {
  const banner = h("div", { class: "banner-slot", hidden: true });
  const body = h("tbody");
  const table = h(
    "table",
    { class: "table", id: "workflows-table" },
    h("caption", { class: "visually-hidden" }, "Event types and their current workflow."),
    h(
      "thead",
      {},
      h("tr", {}, h("th", { scope: "col" }, "Event type"), h("th", { scope: "col" }, "Current version"), h("th", { scope: "col" }, "Steps"), h("th", { scope: "col", class: "optional" }, "Description")),
    ),
    body,
  );
  const tableWrap = h("div", { class: "table-wrap" }, table);
  const empty = h("div", { hidden: true });
  const status = h("p", { class: "list-status", "aria-live": "polite" });
  const refresh = h("button", { type: "button", class: "btn small", id: "workflows-refresh" }, "Refresh");
  let alive = true;

  setChildren(
    root,
    h("div", { class: "page-head" }, pageTitle("Workflows"), refresh),
    h("p", { class: "lead" }, "What happens after an event, step by step: each event type has one current workflow. Open a type to edit its steps, try them on a sample event and follow its runs."),
    banner,
    tableWrap,
    empty,
    h("div", { class: "list-foot" }, status),
  );

  async function load() {
    setBanner(banner, null);
    setChildren(body, h("tr", {}, h("td", { colspan: "4" }, spinner("Loading workflows…"))));
    try {
      const types = (await graphql(TYPES)).eventTypes;
      const chunks = [];
      for (let at = 0; at < types.length; at += CHUNK) chunks.push(types.slice(at, at + CHUNK));
      const answers = await Promise.all(
        chunks.map((chunk) => graphql(workflowsQuery(chunk.length), Object.fromEntries(chunk.map((t, i) => [`t${i}`, t.name])))),
      );
      const current = answers.flatMap((data, c) => chunks[c].map((_, i) => data[`w${i}`]));
      if (!alive) return;
      setChildren(body, types.map((t, i) => row(t, current[i])));
      tableWrap.hidden = !types.length;
      empty.hidden = Boolean(types.length);
      if (!types.length) setChildren(empty, emptyState("No event types yet.", "Register an event type through the API; its workflow can then be edited here."));
      status.textContent = types.length ? `${types.length} event type${types.length === 1 ? "" : "s"}.` : "";
    } catch (error) {
      if (!alive) return;
      setChildren(body);
      setBanner(banner, error, { retry: load });
    }
  }

  function row(type, workflow) {
    const href = `#/workflows/${encodeURIComponent(type.name)}`;
    return h(
      "tr",
      { "data-event-type": type.name },
      h("td", {}, h("a", { class: "workflow-link mono", href }, type.name), type.builtin ? h("span", { class: "badge", title: "Ships with Herald." }, "Built-in") : null),
      h("td", { class: "workflow-version" }, workflow ? `v${workflow.version}` : h("span", { class: "muted" }, "none")),
      h("td", { class: "workflow-steps mono" }, workflow ? stepSummary(workflow.steps) : "—"),
      h("td", { class: "optional truncate" }, type.description || h("span", { class: "muted" }, "—")),
    );
  }

  refresh.addEventListener("click", () => withProgress(refresh, "Refreshing…", load));
  load();
  return () => {
    alive = false;
  };
}
