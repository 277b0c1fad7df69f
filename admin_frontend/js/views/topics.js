// Topics: named groups of users that a send or a campaign can target. The list, searched by
// key or name, by key with cursor paging; each row opens the topic with its members. The form
// that creates a topic (here) or changes one (on its own screen) is a dialog.

import { ERROR_FIELDS, graphql, unwrap } from "../api.js";
import { buildQuery, debounce, emptyState, h, pageTitle, setChildren, withProgress } from "../dom.js";
import { pagedTable } from "../paged.js";
import { openDialog } from "../dialog.js";
import { ApiError, describeError, setBanner, showFieldError } from "../errors.js";

const PAGE = 25;
const LIST = `query Topics($search: String, $first: Int!, $after: String) {
  topics(search: $search, first: $first, after: $after) {
    edges { node { key name description selfService memberCount } }
    pageInfo { hasNextPage endCursor }
  }
}`;
export const TOPIC_FIELDS = "key name description selfService memberCount createdAt updatedAt";
const CREATE = `mutation CreateTopic($input: CreateTopicInput!) {
  createTopic(input: $input) { __typename ... on Topic { ${TOPIC_FIELDS} } ${ERROR_FIELDS} }
}`;
const UPDATE = `mutation UpdateTopic($key: String!, $input: UpdateTopicInput!) {
  updateTopic(key: $key, input: $input) { __typename ... on Topic { ${TOPIC_FIELDS} } ${ERROR_FIELDS} }
}`;

export function selfServiceBadge(topic) {
  return topic.selfService ? h("span", { class: "badge self-service", title: "Users may join and leave it themselves." }, "Self-service") : null;
}

export function memberWords(count) {
  return `${count.toLocaleString()} member${count === 1 ? "" : "s"}`;
}

/**
 * The create (no `topic`) or edit form in a dialog. Errors the API gives with a field are shown
 * at that field; `onSaved(topic)` runs after a save, with the dialog closed.
 */
export function openTopicForm({ topic = null, onSaved }) {
  const editing = Boolean(topic);
  const field = (id, label, input, help) => {
    const error = h("p", { id: `${id}-error`, class: "field-error", role: "alert", hidden: true });
    input.setAttribute("aria-describedby", `${help ? `${id}-help ` : ""}${id}-error`);
    return { input, error, el: h("div", { class: "field" }, h("label", { for: id }, label), input, help ? h("p", { id: `${id}-help`, class: "help" }, help) : null, error) };
  };
  const key = field(
    "topic-key",
    "Key",
    h("input", { id: "topic-key", class: "mono", autocomplete: "off", spellcheck: "false", maxlength: "100", value: topic?.key ?? "", readonly: editing }),
    editing ? "The key is how sends name the topic; it never changes." : "Lowercase letters, digits, '_', '.', '-'; e.g. product-news. It never changes.",
  );
  const name = field("topic-name", "Name", h("input", { id: "topic-name", autocomplete: "off", maxlength: "200", value: topic?.name ?? "" }));
  const description = field("topic-description", "Description (optional)", h("textarea", { id: "topic-description", rows: "3", maxlength: "2000" }));
  description.input.value = topic?.description ?? "";
  const selfService = h("input", { type: "checkbox", id: "topic-self-service", checked: Boolean(topic?.selfService) });
  const banner = h("div", { class: "banner-slot", hidden: true });
  const save = h("button", { type: "submit", class: "btn primary", id: "topic-save", form: "topic-form" }, editing ? "Save" : "Create topic");
  const cancel = h("button", { type: "button", class: "btn ghost" }, "Cancel");
  const fields = { key, name, description };
  const form = h(
    "form",
    { id: "topic-form", novalidate: true },
    banner,
    key.el,
    name.el,
    description.el,
    h("label", { class: "choice", for: "topic-self-service" }, selfService, "Users may join and leave it themselves (self-service)"),
  );
  const { close } = openDialog({ id: "topic-dialog", title: editing ? `Edit topic ${topic.key}` : "New topic", body: form, actions: [cancel, save] });
  cancel.addEventListener("click", close);
  (editing ? name.input : key.input).focus();

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    setBanner(banner, null);
    for (const f of Object.values(fields)) showFieldError(f.error, "", f.input);
    const values = { name: name.input.value.trim(), description: description.input.value, selfService: selfService.checked };
    await withProgress(save, "Saving…", async () => {
      try {
        const saved = editing
          ? unwrap((await graphql(UPDATE, { key: topic.key, input: values })).updateTopic, "Topic")
          : unwrap((await graphql(CREATE, { input: { key: key.input.value.trim(), ...values } })).createTopic, "Topic");
        close();
        onSaved(saved);
      } catch (error) {
        if (!(error instanceof ApiError)) throw error;
        const at = fields[error.field];
        if (at && !(editing && at === key)) {
          showFieldError(at.error, describeError(error), at.input);
          at.input.focus();
        } else {
          setBanner(banner, error);
        }
      }
    });
  });
}

export function render(root, { query, ctx }) {
  const search = h("input", { id: "topic-search", type: "search", value: query.q || "", placeholder: "Search by key or name", autocomplete: "off", "aria-label": "Search topics by key or name" });
  const banner = h("div", { class: "banner-slot", hidden: true });
  const body = h("tbody");
  const table = h(
    "table",
    { class: "table", id: "topics-table" },
    h("caption", { class: "visually-hidden" }, "Topics, by key."),
    h(
      "thead",
      {},
      h("tr", {}, h("th", { scope: "col" }, "Key"), h("th", { scope: "col" }, "Name"), h("th", { scope: "col", class: "num" }, "Members"), h("th", { scope: "col", class: "optional" }, "Description")),
    ),
    body,
  );
  const tableWrap = h("div", { class: "table-wrap" }, table);
  const empty = h("div", { hidden: true });
  const status = h("p", { class: "list-status", "aria-live": "polite" });
  const more = h("button", { type: "button", class: "btn", id: "topics-more", hidden: true }, "Load more");
  const create = h("button", { type: "button", class: "btn primary", id: "new-topic" }, "New topic");

  setChildren(
    root,
    h("div", { class: "page-head" }, pageTitle("Topics"), h("div", { class: "head-actions" }, create)),
    h("p", { class: "lead" }, "Named groups of users. A send or a campaign to several topics reaches each member once."),
    h("div", { class: "card filters toolbar", role: "search" }, h("div", { class: "field" }, h("label", { for: "topic-search" }, "Search"), search)),
    banner,
    tableWrap,
    empty,
    h("div", { class: "list-foot" }, status, more),
  );

  const term = () => search.value.trim();

  const list = pagedTable({
    body,
    tableWrap,
    empty,
    more,
    banner,
    columns: 4,
    loading: "Loading topics…",
    fetch: async (after) => (await graphql(LIST, { search: term() || null, first: PAGE, after })).topics,
    row,
    done({ shown, hasMore }) {
      if (!shown) {
        setChildren(
          empty,
          term() ? emptyState("No topics match.", "Search for another key or name.") : emptyState("No topics yet.", "A topic is a named group of users you can send to.", h("button", { type: "button", class: "btn primary", onclick: () => create.click() }, "Create a topic")),
        );
      }
      status.textContent = shown ? `Showing ${shown} topic${shown === 1 ? "" : "s"}${hasMore ? "; there are more" : ""}.` : "";
    },
  });

  function row(t) {
    return h(
      "tr",
      { "data-topic-key": t.key },
      h("td", {}, h("a", { class: "topic-link mono", href: `#/topics/${encodeURIComponent(t.key)}` }, t.key)),
      h("td", {}, t.name, " ", selfServiceBadge(t)),
      h("td", { class: "num member-count" }, memberWords(t.memberCount)),
      h("td", { class: "optional truncate" }, t.description || h("span", { class: "muted" }, "—")),
    );
  }

  const searchLater = debounce(() => {
    history.replaceState(null, "", `#/topics${buildQuery({ q: term() })}`);
    list.load();
  }, 300);
  search.addEventListener("input", searchLater);
  create.addEventListener("click", () =>
    openTopicForm({
      onSaved: (topic) => {
        ctx.toast(`Topic ${topic.key} created.`);
        ctx.navigate(`#/topics/${encodeURIComponent(topic.key)}`);
      },
    }),
  );
  list.load();
  return () => {
    list.stop();
    searchLater.cancel();
  };
}
