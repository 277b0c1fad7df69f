// The template editor: name and slug, content per channel and per locale in tabs, the
// variables the content reads, a live preview (previewTemplate, debounced) with sample
// variables, syntax errors at their line, and version history with restore.

import { ERROR_FIELDS, graphql, unwrap } from "../api.js";
import { codeField } from "../code_field.js";
import { openDialog } from "../dialog.js";
import { CHANNELS, channelLabel, debounce, formatDateTime, h, pageTitle, setChildren, spinner, withProgress } from "../dom.js";
import { ApiError, describeError, setBanner, showFieldError } from "../errors.js";

const CONTENT = "content { channel locale subject title body html blocks data badge sound actions { label url name } }";
const TEMPLATE_FIELDS = `slug name description version variables createdAt updatedAt createdBy updatedBy ${CONTENT}
  versions { version name description createdAt createdBy ${CONTENT} }`;

const GET = `query Template($slug: String!) { template(slug: $slug) { ${TEMPLATE_FIELDS} } }`;
const RESULT = `__typename ... on Template { ${TEMPLATE_FIELDS} } ${ERROR_FIELDS} ... on TemplateSyntaxError { line }`;
const CREATE = `mutation CreateTemplate($input: CreateTemplateInput!) { createTemplate(input: $input) { ${RESULT} } }`;
const UPDATE = `mutation UpdateTemplate($slug: String!, $input: UpdateTemplateInput!) { updateTemplate(slug: $slug, input: $input) { ${RESULT} } }`;
const RESTORE = `mutation RestoreVersion($slug: String!, $version: Int!) { restoreTemplateVersion(slug: $slug, version: $version) { ${RESULT} } }`;
const DELETE = `mutation DeleteTemplate($slug: String!) { deleteTemplate(slug: $slug) { __typename ... on DeletedTemplate { slug } ${ERROR_FIELDS} } }`;
const PREVIEW = `mutation Preview($channel: Channel!, $content: [TemplateContentInput!], $locale: String, $variables: JSON) {
  previewTemplate(channel: $channel, content: $content, locale: $locale, variables: $variables) {
    __typename
    ... on RenderedMessage { channel locale subject title body html blocks data badge sound actions { label url name } }
    ${ERROR_FIELDS}
    ... on TemplateSyntaxError { line }
    ... on TemplateRenderError { line }
  }
}`;

// What each channel's content holds: [field, label, rows, hint].
const FIELDS = {
  EMAIL: [
    ["subject", "Subject", 2, null],
    ["body", "Text body", 7, "The plain-text part of the email."],
    ["html", "HTML body", 8, "Optional. Variables are escaped for HTML."],
  ],
  SMS: [["body", "Message", 5, null]],
  PUSH: [
    ["title", "Title", 2, null],
    ["body", "Body", 5, null],
  ],
  IN_APP: [
    ["title", "Title", 2, null],
    ["body", "Body", 5, null],
    ["actions", "Actions (JSON)", 4, 'Optional. Up to two buttons, the first the primary one: [{"label": "Track", "url": "/orders/{{ payload.id }}"}, {"label": "Later", "name": "snooze"}].'],
  ],
  PUSH_MOBILE: [
    ["title", "Title", 2, null],
    ["body", "Body", 4, null],
    ["data", "Data (JSON)", 4, 'Optional. An object of string values, each a template: {"screen": "orders/{{ payload.id }}"}.'],
    ["badge", "Badge", 1, "Optional. The app icon's number."],
    ["sound", "Sound", 1, "Optional. A sound file of the app, or default."],
  ],
  SLACK: [
    ["body", "Text", 4, "The notification and the fallback of the blocks. Variables are escaped for Slack."],
    ["blocks", "Blocks (JSON)", 9, "Optional. Block Kit blocks as a JSON list; every string in them is a template."],
  ],
  TELEGRAM: [["body", "Message (HTML)", 6, "Telegram's HTML (<b>, <i>, <a href>…); variables are escaped."]],
  DISCORD: [
    ["title", "Title", 2, "Optional. Shown as an embed."],
    ["body", "Message", 5, null],
  ],
  TEAMS: [
    ["title", "Title", 2, "Optional. The card's heading."],
    ["body", "Text", 5, null],
  ],
  WEBHOOK: [
    ["subject", "Subject", 2, "Optional."],
    ["title", "Title", 2, "Optional."],
    ["body", "Body", 5, null],
  ],
};
const FIELD_LABEL = { subject: "Subject", title: "Title", body: "Body", html: "HTML body", blocks: "Blocks", data: "Data", badge: "Badge", sound: "Sound", actions: "Actions" };
// Fields the API takes as JSON: edited as JSON text.
const JSON_FIELDS = new Set(["blocks", "data", "actions"]);

/** A JSON value without its null members (an action lists `url: null` beside its `name`). */
function compact(value) {
  if (Array.isArray(value)) return value.map(compact);
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== null).map(([k, v]) => [k, compact(v)]));
  }
  return value;
}

/** A content item as the API gives it, with its JSON fields and badge as editable text. */
function fromApi(item) {
  const out = { ...item };
  for (const name of JSON_FIELDS) out[name] = item[name] == null ? undefined : JSON.stringify(compact(item[name]), null, 2);
  out.badge = item.badge == null ? undefined : String(item.badge);
  return out;
}

/** Editable text back to what the API takes; text that is not JSON (or not a whole number)
 * goes as it is, for the API to refuse with an error naming the field. */
function apiValue(name, value) {
  if (JSON_FIELDS.has(name)) {
    try {
      return JSON.parse(value);
    } catch {
      return value;
    }
  }
  if (name === "badge") return /^\s*\d+\s*$/.test(value) ? Number(value) : -1;
  return value;
}

/** Dotted context paths read inside {{ }} and {% %} (the API lists them for saved templates). */
export function detectVariables(content) {
  const found = new Set();
  for (const item of content) {
    for (const name of ["subject", "title", "body", "html", "blocks", "data", "actions"]) {
      const text = item[name] || "";
      for (const block of text.matchAll(/\{\{([\s\S]*?)\}\}|\{%([\s\S]*?)%\}/g)) {
        const code = block[1] ?? block[2];
        for (const m of code.matchAll(/(?<![\w.])(user|payload|event)((?:\.[A-Za-z_]\w*)*)/g)) found.add(m[1] + m[2]);
      }
    }
  }
  return [...found].filter((p) => ![...found].some((o) => o !== p && o.startsWith(`${p}.`))).sort();
}

/** Sample variables for the preview: every payload path gets a readable placeholder. */
function sampleFor(paths) {
  const payload = {};
  for (const path of paths) {
    const parts = path.split(".");
    if (parts[0] !== "payload" || parts.length < 2) continue;
    let node = payload;
    parts.slice(1).forEach((part, i) => {
      if (i === parts.length - 2) {
        if (typeof node[part] !== "object") node[part] = /url|link/i.test(part) ? "https://example.com" : `Sample ${part.replace(/_/g, " ")}`;
      } else {
        if (typeof node[part] !== "object" || node[part] === null) node[part] = {};
        node = node[part];
      }
    });
  }
  return { payload };
}

function toInput(item) {
  const out = { channel: item.channel, locale: item.locale };
  for (const [name] of FIELDS[item.channel]) {
    const value = item[name];
    if (value !== undefined && value !== null && value !== "") out[name] = apiValue(name, value);
  }
  return out;
}

export function render(root, { params, ctx }) {
  const isNew = !params.slug;
  const state = {
    slug: params.slug || "",
    template: null,
    content: [],
    active: { channel: "EMAIL", locale: "en" },
    sampleEdited: false,
    dirty: false,
    errors: new Map(), // "index.field" -> {text, line}
    localeErrors: new Map(), // index -> text
  };
  let disposed = false;
  let previewSeq = 0;

  // --- the static frame -----------------------------------------------------------------
  const formBanner = h("div", { class: "banner-slot", hidden: true });
  const slugInput = h("input", { id: "template-slug", autocomplete: "off", spellcheck: "false", "aria-describedby": "template-slug-help template-slug-error" });
  const nameInput = h("input", { id: "template-name", autocomplete: "off", "aria-describedby": "template-name-error" });
  const descriptionInput = h("input", { id: "template-description", autocomplete: "off", "aria-describedby": "template-description-error" });
  const slugError = h("p", { id: "template-slug-error", class: "field-error", role: "alert", hidden: true });
  const nameError = h("p", { id: "template-name-error", class: "field-error", role: "alert", hidden: true });
  const descriptionError = h("p", { id: "template-description-error", class: "field-error", role: "alert", hidden: true });
  const contentBanner = h("div", { class: "banner-slot", hidden: true });
  const channelTabs = h("div", { class: "tabs", role: "tablist", "aria-label": "Channel" });
  const panel = h("div", { id: "channel-panel", class: "tab-panel", role: "tabpanel" });
  const saveButton = h("button", { type: "submit", class: "btn primary", id: "save-template" }, isNew ? "Create template" : "Save changes");
  const saveStatus = h("p", { class: "save-status", role: "status" });
  const deleteButton = isNew ? null : h("button", { type: "button", class: "btn danger-ghost", id: "delete-template" }, "Delete template");

  const previewTitle = h("span", { class: "muted" });
  const previewStatus = h("p", { class: "preview-status", id: "preview-status", role: "status" });
  const previewBody = h("div", { class: "preview-body", id: "preview" });
  const variablesList = h("ul", { class: "chips", id: "variables" });
  const variablesNote = h("p", { class: "help" });
  const sampleInput = h("textarea", { id: "sample-variables", rows: "7", spellcheck: "false", "aria-describedby": "sample-variables-help sample-variables-error" });
  const sampleError = h("p", { id: "sample-variables-error", class: "field-error", role: "alert", hidden: true });
  const versionsBox = h("section", { class: "card versions", id: "versions", hidden: isNew });
  const versionBadge = h("span", { class: "badge", hidden: isNew });
  const heading = pageTitle(isNew ? "New template" : "Edit template", " ", versionBadge);

  const form = h(
    "form",
    { class: "editor", id: "template-form", novalidate: true },
    h(
      "div",
      { class: "editor-main" },
      formBanner,
      h(
        "div",
        { class: "card stack" },
        h(
          "div",
          { class: "grid-2" },
          h(
            "div",
            { class: "field" },
            h("label", { for: "template-slug" }, "Slug"),
            slugInput,
            h("p", { id: "template-slug-help", class: "help" }, isNew ? "How services refer to it: lowercase letters, digits, - and _. Cannot change later." : "Services refer to the template by this slug."),
            slugError,
          ),
          h("div", { class: "field" }, h("label", { for: "template-name" }, "Name"), nameInput, nameError),
        ),
        h("div", { class: "field" }, h("label", { for: "template-description" }, "Description ", h("span", { class: "muted" }, "(optional)")), descriptionInput, descriptionError),
      ),
      h("div", { class: "card content-card" }, h("h2", {}, "Content"), contentBanner, channelTabs, panel),
      h("div", { class: "actions sticky-actions" }, saveButton, saveStatus, h("span", { class: "spacer" }), deleteButton),
    ),
    h(
      "aside",
      { class: "editor-side" },
      h("section", { class: "card preview", "aria-labelledby": "preview-heading" }, h("h2", { id: "preview-heading" }, "Preview ", previewTitle), previewStatus, previewBody),
      h(
        "section",
        { class: "card variables" },
        h("h2", {}, "Variables"),
        variablesNote,
        variablesList,
        h("label", { for: "sample-variables" }, "Sample variables (JSON)"),
        h(
          "p",
          { id: "sample-variables-help", class: "help" },
          "Values used by the preview. ",
          h("code", {}, "user"),
          " and ",
          h("code", {}, "event"),
          " get sample values (Ada Lovelace) unless you set them here.",
        ),
        sampleInput,
        sampleError,
      ),
      versionsBox,
    ),
  );

  setChildren(root, h("div", { class: "page-head" }, h("a", { href: "#/templates", class: "back" }, "← Templates"), heading), form);

  // --- content tabs ---------------------------------------------------------------------
  const fields = new Map(); // field name -> codeField, for the active tab

  function indexOf(channel, locale) {
    return state.content.findIndex((c) => c.channel === channel && c.locale === locale);
  }

  function activeIndex() {
    return indexOf(state.active.channel, state.active.locale);
  }

  function tabHasError(index) {
    return [...state.errors.keys()].some((k) => k.startsWith(`${index}.`)) || state.localeErrors.has(index);
  }

  function tabKeys(event, buttons, activate) {
    const i = buttons.indexOf(event.target);
    let next = null;
    if (event.key === "ArrowRight") next = buttons[(i + 1) % buttons.length];
    else if (event.key === "ArrowLeft") next = buttons[(i - 1 + buttons.length) % buttons.length];
    else if (event.key === "Home") next = buttons[0];
    else if (event.key === "End") next = buttons[buttons.length - 1];
    if (next) {
      event.preventDefault();
      activate(next);
    }
  }

  function renderTabs() {
    const buttons = CHANNELS.map(({ value, label }) => {
      const locales = state.content.filter((c) => c.channel === value);
      const selected = state.active.channel === value;
      const error = locales.some((c) => tabHasError(state.content.indexOf(c)));
      return h(
        "button",
        {
          type: "button",
          role: "tab",
          id: `tab-${value}`,
          class: ["tab", error && "tab-error"],
          "aria-selected": String(selected),
          "aria-controls": "channel-panel",
          tabindex: selected ? "0" : "-1",
          "data-channel": value,
          onclick: () => selectChannel(value),
        },
        label,
        locales.length ? h("span", { class: "tab-count" }, String(locales.length)) : h("span", { class: "tab-count empty" }, "–"),
        error ? h("span", { class: "tab-dot", title: "Has an error" }, h("span", { class: "visually-hidden" }, " (has an error)")) : null,
      );
    });
    buttons.forEach((b) =>
      b.addEventListener("keydown", (e) =>
        tabKeys(e, buttons, (next) => {
          selectChannel(next.dataset.channel);
          channelTabs.querySelector(`[data-channel="${next.dataset.channel}"]`)?.focus();
        }),
      ),
    );
    setChildren(channelTabs, ...buttons);
    panel.setAttribute("aria-labelledby", `tab-${state.active.channel}`);
  }

  function selectChannel(channel) {
    const first = state.content.find((c) => c.channel === channel);
    state.active = { channel, locale: first ? first.locale : "en" };
    renderTabs();
    renderPanel();
    schedulePreview();
  }

  function selectLocale(locale) {
    state.active = { ...state.active, locale };
    renderTabs();
    renderPanel();
    schedulePreview();
  }

  function renderPanel() {
    fields.clear();
    const { channel, locale } = state.active;
    const index = activeIndex();
    const locales = state.content.filter((c) => c.channel === channel);
    if (!locales.length) {
      setChildren(
        panel,
        h(
          "div",
          { class: "empty-state compact" },
          h("p", { class: "empty-title" }, `No ${channelLabel(channel)} content.`),
          h("p", {}, `Add it to send this template by ${channelLabel(channel).toLowerCase()}.`),
          h(
            "button",
            {
              type: "button",
              class: "btn",
              id: "add-channel",
              onclick: () => {
                state.content.push({ channel, locale: "en" });
                markDirty();
                selectLocale("en");
                fields.values().next().value?.textarea.focus();
              },
            },
            `Add ${channelLabel(channel)} content`,
          ),
        ),
      );
      return;
    }

    const localeButtons = locales.map((c) => {
      const i = state.content.indexOf(c);
      const selected = c.locale === locale;
      return h(
        "button",
        {
          type: "button",
          role: "tab",
          class: ["tab small", tabHasError(i) && "tab-error"],
          "aria-selected": String(selected),
          tabindex: selected ? "0" : "-1",
          "data-locale": c.locale,
          onclick: () => selectLocale(c.locale),
        },
        c.locale,
      );
    });
    localeButtons.forEach((b) =>
      b.addEventListener("keydown", (e) =>
        tabKeys(e, localeButtons, (next) => {
          selectLocale(next.dataset.locale);
          panel.querySelector(`[data-locale="${next.dataset.locale}"]`)?.focus();
        }),
      ),
    );
    const newLocale = h("input", { id: "new-locale", placeholder: "e.g. pt-BR", size: "8", autocomplete: "off", "aria-describedby": "new-locale-error" });
    const newLocaleError = h("p", { id: "new-locale-error", class: "field-error", role: "alert", hidden: true });
    const addLocale = () => {
      const value = newLocale.value.trim();
      if (!value) {
        showFieldError(newLocaleError, "Type a locale first, like pt-BR or de.", newLocale);
        newLocale.focus();
        return;
      }
      if (indexOf(channel, value) >= 0) {
        showFieldError(newLocaleError, `${channelLabel(channel)} already has ${value} content.`, newLocale);
        newLocale.focus();
        return;
      }
      const source = state.content[index] || {};
      // Start from the current locale's text: translating is easier than starting blank.
      state.content.push({ ...source, channel, locale: value });
      markDirty();
      selectLocale(value);
    };
    newLocale.addEventListener("keydown", (e) => {
      if (e.key === "Enter") {
        e.preventDefault();
        addLocale();
      }
    });
    const localeError = h("p", { class: "field-error", role: "alert", id: "locale-error", hidden: !state.localeErrors.has(index) }, state.localeErrors.get(index) || "");

    const codeFields = FIELDS[channel].map(([name, label, rows, hint]) => {
      const item = state.content[index];
      const field = codeField({
        id: `field-${name}`,
        label,
        rows,
        hint,
        value: item[name] || "",
        onInput: (value) => {
          item[name] = value;
          if (state.errors.delete(`${index}.${name}`)) {
            field.setError("");
            renderTabs();
          }
          markDirty();
          schedulePreview();
        },
      });
      const error = state.errors.get(`${index}.${name}`);
      if (error) field.setError(error.text, error.line);
      fields.set(name, field);
      return field.el;
    });

    setChildren(
      panel,
      h(
        "div",
        { class: "locale-bar" },
        h("div", { class: "tabs small", role: "tablist", "aria-label": `${channelLabel(channel)} locales` }, localeButtons),
        h(
          "div",
          { class: "locale-add" },
          h("label", { for: "new-locale", class: "visually-hidden" }, "New locale"),
          newLocale,
          h("button", { type: "button", class: "btn small", onclick: addLocale }, "Add locale"),
        ),
      ),
      newLocaleError,
      localeError,
      codeFields,
      h(
        "div",
        { class: "panel-foot" },
        h(
          "button",
          {
            type: "button",
            class: "btn danger-ghost small",
            onclick: () => {
              state.content.splice(index, 1);
              // Errors are keyed by position; positions after this one moved.
              state.errors.clear();
              state.localeErrors.clear();
              markDirty();
              selectChannel(channel);
            },
          },
          `Remove ${channelLabel(channel)} · ${locale}`,
        ),
      ),
    );
  }

  // --- variables and sample -------------------------------------------------------------
  function renderVariables() {
    const saved = state.template && !state.dirty;
    const paths = saved ? state.template.variables : detectVariables(state.content);
    variablesNote.textContent = saved ? "What this template reads when it is sent:" : "What the content reads (as you type):";
    setChildren(variablesList, ...(paths.length ? paths.map((p) => h("li", { class: "chip mono" }, p)) : [h("li", { class: "muted" }, "No variables yet. Write {{ user.first_name }} or {{ payload.something }} to use one.")]));
    if (!state.sampleEdited) {
      sampleInput.value = JSON.stringify(sampleFor(paths), null, 2);
    }
  }

  sampleInput.addEventListener("input", () => {
    state.sampleEdited = true;
    schedulePreview();
  });

  function readSample() {
    const text = sampleInput.value.trim();
    if (!text) return {};
    let value;
    try {
      value = JSON.parse(text);
    } catch (error) {
      throw new ApiError({ code: "VALIDATION", message: `The sample variables are not valid JSON: ${error.message}`, field: "variables" });
    }
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      throw new ApiError({ code: "VALIDATION", message: 'The sample variables must be a JSON object, like {"payload": {}}.', field: "variables" });
    }
    return value;
  }

  // --- preview --------------------------------------------------------------------------
  const schedulePreview = debounce(runPreview, 350);

  function setPreviewNote(kind, ...children) {
    setChildren(previewBody, h("div", { class: `preview-note ${kind}`, role: kind === "error" ? "alert" : null }, ...children));
  }

  async function runPreview() {
    if (disposed) return;
    const index = activeIndex();
    const { channel, locale } = state.active;
    previewTitle.textContent = `${channelLabel(channel)} · ${locale}`;
    if (index < 0) {
      previewStatus.textContent = "";
      setPreviewNote("info", `Add ${channelLabel(channel)} content to see a preview.`);
      return;
    }
    let variables;
    try {
      variables = readSample();
      showFieldError(sampleError, "", sampleInput);
    } catch (error) {
      showFieldError(sampleError, error.detail, sampleInput);
      previewStatus.textContent = "";
      setPreviewNote("warning", "Fix the sample variables to see the preview.");
      return;
    }
    const mine = ++previewSeq;
    setChildren(previewStatus, h("span", { class: "spinner", "aria-hidden": "true" }), "Rendering…");
    let result;
    try {
      const data = await graphql(PREVIEW, { channel, locale, content: [toInput(state.content[index])], variables });
      result = data.previewTemplate;
    } catch (error) {
      if (mine !== previewSeq || disposed) return;
      previewStatus.textContent = "";
      setPreviewNote("error", describeError(error));
      return;
    }
    if (mine !== previewSeq || disposed) return;
    previewStatus.textContent = "Up to date.";
    const hadErrors = [...state.errors.keys()].filter((k) => k.startsWith(`${index}.`) && state.errors.get(k).source === "preview");
    hadErrors.forEach((k) => state.errors.delete(k));
    state.localeErrors.delete(index);

    if (result.__typename === "RenderedMessage") {
      showRendered(result);
    } else {
      const error = new ApiError({ code: result.code, message: result.message, field: result.field, line: result.line });
      const contentField = /^content\[0\](?:\.(\w+))?(?:[.[].*)?$/.exec(result.field || "");
      if (result.__typename === "TemplateSyntaxError" && contentField?.[1]) {
        const name = contentField[1];
        state.errors.set(`${index}.${name}`, { text: describeError(error), line: result.line, source: "preview" });
        setPreviewNote("error", `Fix the mistake in ${FIELD_LABEL[name] ?? name}${result.line ? ` (line ${result.line})` : ""} to see the preview.`);
      } else if (result.__typename === "TemplateRenderError") {
        setPreviewNote(
          "warning",
          h("strong", {}, `${FIELD_LABEL[result.field] ?? "The template"}${result.line ? `, line ${result.line}` : ""}: `),
          describeError(error),
          /missing from the variables/.test(result.message) ? " Add it to the sample variables to preview it." : "",
        );
      } else if (result.field && result.field.startsWith("variables")) {
        showFieldError(sampleError, describeError(error), sampleInput);
        setPreviewNote("warning", "Fix the sample variables to see the preview.");
      } else if (contentField) {
        if (contentField[1] === "locale" || !contentField[1]) state.localeErrors.set(index, describeError(error));
        setPreviewNote("info", "The preview needs: ", describeError(error));
      } else {
        setPreviewNote("error", describeError(error));
      }
    }
    // Re-mark fields and tabs without rebuilding the textareas (that would lose the caret).
    for (const [name, field] of fields) {
      const e = state.errors.get(`${index}.${name}`);
      field.setError(e ? e.text : "", e ? e.line : null);
    }
    const localeError = panel.querySelector("#locale-error");
    if (localeError) showFieldError(localeError, state.localeErrors.get(index) || "");
    renderTabs();
  }

  function showRendered(message) {
    const parts = [];
    const meta = message.locale !== state.active.locale ? `No ${state.active.locale} content matched; shown in ${message.locale}.` : null;
    if (meta) parts.push(h("p", { class: "help" }, meta));
    if (message.subject !== null) parts.push(h("div", { class: "rendered-row" }, h("span", { class: "rendered-label" }, "Subject"), h("div", { class: "rendered-subject" }, message.subject)));
    if (message.title !== null) parts.push(h("div", { class: "rendered-row" }, h("span", { class: "rendered-label" }, "Title"), h("div", { class: "rendered-title" }, message.title)));
    if (message.body !== null) parts.push(h("div", { class: "rendered-row" }, h("span", { class: "rendered-label" }, "Body"), h("pre", { class: "rendered-body" }, message.body)));
    for (const [name, label] of [["blocks", "Blocks"], ["data", "Data"]]) {
      if (message[name] != null) parts.push(h("div", { class: "rendered-row" }, h("span", { class: "rendered-label" }, label), h("pre", { class: "rendered-json", "data-field": name }, JSON.stringify(message[name], null, 2))));
    }
    if (message.actions?.length) {
      const buttons = message.actions.map((a, i) => h("span", { class: i === 0 ? "btn btn-primary" : "btn", title: a.url ? `Opens ${a.url}` : `The app handles "${a.name}"` }, a.label));
      parts.push(h("div", { class: "rendered-row" }, h("span", { class: "rendered-label" }, "Actions"), h("div", { class: "rendered-actions", "data-field": "actions" }, buttons)));
    }
    for (const [name, label] of [["badge", "Badge"], ["sound", "Sound"]]) {
      if (message[name] != null) parts.push(h("div", { class: "rendered-row" }, h("span", { class: "rendered-label" }, label), h("div", { "data-field": name }, String(message[name]))));
    }
    if (message.html !== null) {
      // A sandboxed frame: the HTML is shown as the recipient's mail client would, and no
      // script in it can run or reach the admin page.
      const frame = h("iframe", { class: "rendered-html", sandbox: "", title: "HTML body preview", referrerpolicy: "no-referrer" });
      frame.srcdoc = `<!doctype html><meta charset="utf-8"><style>body{font:14px/1.5 system-ui,sans-serif;margin:12px;color:#1d2433}</style>${message.html}`;
      parts.push(h("div", { class: "rendered-row" }, h("span", { class: "rendered-label" }, "HTML"), frame));
    }
    setChildren(previewBody, h("div", { class: "rendered", "data-channel": message.channel }, parts));
  }

  // --- dirty state, save, delete --------------------------------------------------------
  function markDirty() {
    state.dirty = true;
    saveStatus.textContent = "Unsaved changes.";
    renderVariables();
  }

  for (const input of [nameInput, descriptionInput, slugInput]) input.addEventListener("input", () => markDirty());

  function clearSaveErrors() {
    setBanner(formBanner, null);
    setBanner(contentBanner, null);
    showFieldError(slugError, "", slugInput);
    showFieldError(nameError, "", nameInput);
    showFieldError(descriptionError, "", descriptionInput);
    for (const key of [...state.errors.keys()]) if (state.errors.get(key).source === "save") state.errors.delete(key);
    state.localeErrors.clear();
  }

  /** Put a save error next to its field, switching tabs when it is in the content. */
  function placeError(error) {
    const field = error.field || "";
    const text = describeError(error);
    const top = { slug: [slugError, slugInput], name: [nameError, nameInput], description: [descriptionError, descriptionInput] }[field];
    if (top) {
      showFieldError(top[0], text, top[1]);
      top[1].focus();
      return `Not saved: see ${field}.`;
    }
    if (field === "content") {
      setBanner(contentBanner, text);
      return "Not saved: the template needs content.";
    }
    const m = /^content\[(\d+)\](?:\.(\w+))?(?:[.[].*)?$/.exec(field);
    if (m && state.content[Number(m[1])]) {
      const index = Number(m[1]);
      const name = m[2];
      const item = state.content[index];
      state.active = { channel: item.channel, locale: item.locale };
      if (name && FIELDS[item.channel].some(([n]) => n === name)) {
        state.errors.set(`${index}.${name}`, { text, line: error.line, source: "save" });
      } else {
        state.localeErrors.set(index, text);
      }
      renderTabs();
      renderPanel();
      const target = name && fields.get(name);
      if (target) {
        if (error.line) target.revealLine(error.line);
        else target.textarea.focus();
      } else {
        panel.querySelector("#new-locale")?.focus();
      }
      return `Not saved: see ${channelLabel(item.channel)} · ${item.locale}${name ? ` · ${FIELD_LABEL[name] ?? name}` : ""}.`;
    }
    setBanner(formBanner, error);
    formBanner.scrollIntoView({ block: "nearest" });
    return "Not saved.";
  }

  async function save() {
    clearSaveErrors();
    renderPanel();
    const input = {
      name: nameInput.value,
      description: descriptionInput.value,
      content: state.content.map(toInput),
    };
    saveStatus.textContent = "";
    await withProgress(saveButton, isNew ? "Creating…" : "Saving…", async () => {
      try {
        const data = isNew ? await graphql(CREATE, { input: { ...input, slug: slugInput.value.trim() } }) : await graphql(UPDATE, { slug: state.slug, input });
        const template = unwrap(isNew ? data.createTemplate : data.updateTemplate, "Template");
        ctx.toast(isNew ? `Created “${template.name}”.` : `Saved “${template.name}” as version ${template.version}.`);
        if (isNew) {
          state.dirty = false;
          ctx.navigate(`#/templates/edit/${encodeURIComponent(template.slug)}`, { replace: true });
        } else {
          load(template);
          saveStatus.textContent = `Saved as version ${template.version}.`;
        }
      } catch (error) {
        if (!(error instanceof ApiError)) throw error;
        saveStatus.textContent = placeError(error);
      }
    });
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    save();
  });
  form.addEventListener("keydown", (event) => {
    if ((event.ctrlKey || event.metaKey) && event.key === "s") {
      event.preventDefault();
      if (!saveButton.disabled) save();
    }
  });

  deleteButton?.addEventListener("click", () => {
    const error = h("div", { class: "banner-slot", hidden: true });
    const confirm = h("button", { type: "button", class: "btn danger" }, "Delete");
    const cancel = h("button", { type: "button", class: "btn" }, "Cancel");
    const { close } = openDialog({
      id: "delete-dialog",
      title: `Delete “${state.template.name}”?`,
      body: [h("p", {}, "The template and all its versions will be gone. This cannot be undone."), error],
      actions: [cancel, confirm],
    });
    cancel.addEventListener("click", close);
    confirm.addEventListener("click", () =>
      withProgress(confirm, "Deleting…", async () => {
        try {
          unwrap((await graphql(DELETE, { slug: state.slug })).deleteTemplate, "DeletedTemplate");
        } catch (e) {
          setBanner(error, e);
          return;
        }
        close();
        state.dirty = false;
        ctx.toast(`Deleted “${state.template.name}”.`);
        ctx.navigate("#/templates");
      }),
    );
  });

  // --- versions -------------------------------------------------------------------------
  function renderVersions() {
    const t = state.template;
    if (!t) return;
    setChildren(
      versionsBox,
      h("h2", {}, "Version history"),
      h(
        "ol",
        { class: "version-list", reversed: true },
        t.versions.map((v) =>
          h(
            "li",
            { "data-version": String(v.version) },
            h("div", {}, h("strong", {}, `Version ${v.version}`), v.version === t.version ? h("span", { class: "badge" }, "current") : null),
            h("div", { class: "muted" }, formatDateTime(v.createdAt), v.createdBy ? ` · ${v.createdBy}` : ""),
            h("button", { type: "button", class: "btn small", onclick: () => viewVersion(v) }, `View version ${v.version}`),
          ),
        ),
      ),
    );
  }

  function viewVersion(v) {
    const current = v.version === state.template.version;
    const error = h("div", { class: "banner-slot", hidden: true });
    const restore = current ? null : h("button", { type: "button", class: "btn primary", id: "restore-version" }, `Restore version ${v.version}`);
    const closeButton = h("button", { type: "button", class: "btn" }, "Close");
    const body = [
      h("p", {}, h("strong", {}, v.name), v.description ? ` · ${v.description}` : ""),
      h("p", { class: "muted" }, `Saved ${formatDateTime(v.createdAt)}${v.createdBy ? ` by ${v.createdBy}` : ""}.`),
      ...v.content.map((c) =>
        h(
          "section",
          { class: "version-content" },
          h("h3", {}, `${channelLabel(c.channel)} · ${c.locale}`),
          FIELDS[c.channel].filter(([name]) => c[name]).map(([name, label]) => h("div", {}, h("div", { class: "rendered-label" }, label), h("pre", { class: "code-view" }, typeof c[name] === "object" ? JSON.stringify(c[name], null, 2) : String(c[name])))),
        ),
      ),
      current ? h("p", { class: "help" }, "This is the current version.") : h("p", { class: "help" }, `Restoring makes a new version ${state.template.version + 1} with this content${state.dirty ? "; your unsaved changes will be replaced" : ""}.`),
      error,
    ];
    const { close } = openDialog({ id: "version-dialog", title: `Version ${v.version}`, body, actions: [closeButton, restore].filter(Boolean), wide: true });
    closeButton.addEventListener("click", close);
    restore?.addEventListener("click", () =>
      withProgress(restore, "Restoring…", async () => {
        try {
          const template = unwrap((await graphql(RESTORE, { slug: state.slug, version: v.version })).restoreTemplateVersion, "Template");
          close();
          load(template);
          ctx.toast(`Restored version ${v.version} as version ${template.version}.`);
        } catch (e) {
          setBanner(error, e);
        }
      }),
    );
  }

  // --- loading --------------------------------------------------------------------------
  function load(template) {
    state.template = template;
    state.slug = template.slug;
    state.content = template.content.map(fromApi);
    state.dirty = false;
    state.errors.clear();
    state.localeErrors.clear();
    slugInput.value = template.slug;
    slugInput.readOnly = true;
    nameInput.value = template.name;
    descriptionInput.value = template.description;
    versionBadge.hidden = false;
    versionBadge.textContent = `version ${template.version}`;
    heading.firstChild.textContent = `Edit “${template.name}”`;
    if (indexOf(state.active.channel, state.active.locale) < 0) {
      const first = state.content[0];
      if (first) state.active = { channel: first.channel, locale: first.locale };
    }
    saveStatus.textContent = "";
    renderTabs();
    renderPanel();
    renderVariables();
    renderVersions();
    schedulePreview();
  }

  if (isNew) {
    state.content = [{ channel: "EMAIL", locale: "en" }];
    renderTabs();
    renderPanel();
    renderVariables();
    runPreview();
    slugInput.focus();
  } else {
    setChildren(panel, spinner("Loading the template…"));
    graphql(GET, { slug: state.slug })
      .then((data) => {
        if (disposed) return;
        if (!data.template) {
          setChildren(root, h("div", { class: "page-head" }, h("a", { href: "#/templates", class: "back" }, "← Templates"), pageTitle("Template not found")), h("div", { class: "empty-state" }, h("p", { class: "empty-title" }, `There is no template “${state.slug}”.`), h("p", {}, "It may have been deleted or renamed."), h("a", { class: "btn", href: "#/templates" }, "Back to templates")));
          return;
        }
        load(data.template);
      })
      .catch((error) => {
        if (disposed) return;
        setChildren(panel);
        setBanner(formBanner, error, { retry: () => ctx.navigate(window.location.hash) });
      });
  }

  ctx.setLeaveGuard(() => (state.dirty ? "Your changes to this template are not saved yet. Leave and lose them?" : null));

  return () => {
    disposed = true;
    schedulePreview.cancel();
  };
}
