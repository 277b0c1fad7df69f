// One event type's workflow: the steps as a vertical list to add to, reorder, branch and
// configure, saved as a new version; the dry run beside it (the unsaved steps, a payload and a
// user); the versions; the recent runs. And `runView`, one run's step timeline.
//
// The steps are kept as the JSON the API takes (`saveWorkflow(steps)`); each step's place is
// its API path (`steps[2].then[0]`), so a WorkflowStepError's `field` finds its input.

import { ERROR_FIELDS, graphql, unwrap } from "../api.js";
import { CHANNELS, emptyState, formatDateTime, h, pageTitle, setChildren, spinner, withProgress } from "../dom.js";
import { ApiError, describeError, setBanner, showFieldError } from "../errors.js";
import { pagedTable } from "../paged.js";

const WORKFLOW_FIELDS = "id eventType version current steps cancels createdAt createdBy";
const LOAD = `query Workflow($type: String!) {
  workflow(eventType: $type) { ${WORKFLOW_FIELDS} }
  workflowVersions(eventType: $type) { ${WORKFLOW_FIELDS} }
  templates(first: 100) { edges { node { slug name } } }
  eventTypes { name templateSlug }
}`;
const SAVE = `mutation SaveWorkflow($type: String!, $steps: JSON!, $cancels: [String!]) {
  saveWorkflow(eventType: $type, steps: $steps, cancels: $cancels) {
    __typename ... on Workflow { ${WORKFLOW_FIELDS} } ... on WorkflowStepError { step } ${ERROR_FIELDS}
  }
}`;
const PREVIEW = `mutation PreviewWorkflow($type: String!, $payload: JSON, $user: ID, $steps: JSON) {
  previewWorkflow(eventType: $type, payload: $payload, userId: $user, steps: $steps) {
    __typename
    ... on WorkflowPreview { workflowVersion steps { path name type runs condition detail messages { channel locale subject title body } } }
    ... on WorkflowStepError { step }
    ${ERROR_FIELDS}
  }
}`;
const RUNS = `query WorkflowRuns($filter: WorkflowRunFilter, $first: Int!, $after: String) {
  workflowRuns(filter: $filter, first: $first, after: $after) {
    edges { node { id userId status workflowVersion cursor dueAt createdAt finishedAt } }
    pageInfo { hasNextPage endCursor }
  }
}`;
const RUN = `query WorkflowRun($id: ID!) {
  workflowRun(id: $id) {
    id eventType eventId userId workflowVersion status cancelKey cursor dueAt error createdAt updatedAt finishedAt
    steps { path name type status outcome attempts startedAt finishedAt }
  }
}`;

export const STEP_TYPES = [
  { value: "send", label: "Send" },
  { value: "delay", label: "Delay" },
  { value: "branch", label: "Branch" },
  { value: "throttle", label: "Throttle" },
  { value: "digest", label: "Digest" },
  { value: "fetch", label: "Fetch" },
];
const FINAL = new Set(["completed", "failed", "cancelled", "stopped"]);

function newStep(type) {
  switch (type) {
    case "send":
      return { type, channels: ["in_app"] };
    case "delay":
      return { type, duration: "1h" };
    case "branch":
      return { type, condition: "true", then: [], else: [] };
    case "throttle":
      return { type, limit: 1, window: "1h" };
    case "digest":
      return { type, window: "1h" };
    default:
      return { type, url: "https://", method: "GET", timeout: 5 };
  }
}

/** The steps as saveWorkflow takes them: blank optional fields left out. */
export function cleanSteps(steps) {
  return steps.map((step) => {
    const out = {};
    for (const [key, value] of Object.entries(step)) {
      if (key === "then" || key === "else") out[key] = cleanSteps(value || []);
      else if (value !== "" && value !== null && value !== undefined) out[key] = value;
    }
    return out;
  });
}

/** "90" is seconds (a number); "1h30m" stays text. */
function durationValue(text) {
  const trimmed = text.trim();
  return /^\d+(\.\d+)?$/.test(trimmed) ? Number(trimmed) : trimmed;
}

function badgeFor(status) {
  return h("span", { class: `badge run-${String(status).toLowerCase()}` }, status);
}

/** What a step of a run did, in a few words, from its outcome. */
export function outcomeSummary(type, outcome) {
  if (outcome.error) return `Failed: ${outcome.error}`;
  if (outcome.condition === false) return "Skipped: its condition was false.";
  switch (type) {
    case "send":
      return Object.entries(outcome.channels || {}).map(([channel, status]) => `${channel}: ${status}`).join(", ") + (outcome.read === true ? " (read)" : outcome.read === false ? " (unread)" : "");
    case "delay":
      return outcome.until ? `Waited until ${formatDateTime(outcome.until)}.` : "";
    case "branch":
      return `Condition ${String(outcome.value)}: took ${outcome.arm}.`;
    case "throttle":
      return outcome.passed === false ? "Over the limit: the run stopped." : "Within the limit.";
    case "digest":
      return outcome.count !== undefined ? `Collected ${outcome.count} event${outcome.count === 1 ? "" : "s"}.` : "";
    default:
      return "";
  }
}

function jsonText(value) {
  return JSON.stringify(value, null, 2);
}

// --- the editor -------------------------------------------------------------------------

export function render(root, { params, ctx }) {
  const eventType = params.eventType;
  let steps = [];
  let templates = [];
  let typeTemplate = null;
  let dirty = false;
  let alive = true;
  // Error slots and inputs of the rendered steps, by API path (`steps[1].then[0].duration`).
  let slots = new Map();

  const banner = h("div", { class: "banner-slot", hidden: true });
  const list = h("div", { id: "wf-steps" });
  const saveStatus = h("p", { class: "save-status", id: "wf-save-status", "aria-live": "polite" });
  const save = h("button", { type: "button", class: "btn primary", id: "wf-save" }, "Save as a new version");
  const cancelsInput = h("input", { id: "wf-cancels", autocomplete: "off", spellcheck: "false", placeholder: "e.g. payment_reminder" });
  const cancelsError = h("p", { id: "wf-cancels-error", class: "field-error", role: "alert", hidden: true });
  cancelsInput.setAttribute("aria-describedby", "wf-cancels-help wf-cancels-error");
  const versionsBox = h("div", { id: "wf-versions" }, spinner("Loading versions…"));

  // Dry run.
  const payloadInput = h("textarea", { id: "wf-preview-payload", rows: "6", class: "mono", spellcheck: "false", "aria-describedby": "wf-preview-payload-error" });
  payloadInput.value = "{}";
  const payloadError = h("p", { id: "wf-preview-payload-error", class: "field-error", role: "alert", hidden: true });
  const userInput = h("input", { id: "wf-preview-user", autocomplete: "off", spellcheck: "false", placeholder: "a user id (optional)" });
  const previewButton = h("button", { type: "button", class: "btn", id: "wf-preview-run" }, "Dry run");
  const previewBanner = h("div", { class: "banner-slot", hidden: true });
  const previewOut = h("div", { id: "wf-preview", "aria-live": "polite" }, h("p", { class: "preview-note" }, "Try the steps as they are now, saved or not, on a sample event: nothing is sent."));

  // Runs.
  const runsBanner = h("div", { class: "banner-slot", hidden: true });
  const runsBody = h("tbody");
  const runsTableWrap = h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: "table", id: "wf-runs-table" },
      h("caption", { class: "visually-hidden" }, "Recent runs of this workflow, newest first."),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Started"), h("th", { scope: "col" }, "User"), h("th", { scope: "col" }, "Status"), h("th", { scope: "col" }, "Version"), h("th", { scope: "col" }, "Next step"), h("th", { scope: "col", class: "optional" }, "Due"))),
      runsBody,
    ),
  );
  const runsEmpty = h("div", { hidden: true });
  const runsStatus = h("p", { class: "list-status", "aria-live": "polite" });
  const runsMore = h("button", { type: "button", class: "btn", hidden: true }, "Load more");
  const runsRefresh = h("button", { type: "button", class: "btn small", id: "wf-runs-refresh" }, "Refresh");

  setChildren(
    root,
    h("p", { class: "crumbs" }, h("a", { href: "#/workflows" }, "Workflows"), " / "),
    h("div", { class: "page-head" }, pageTitle("Workflow ", h("span", { class: "mono" }, eventType))),
    banner,
    h(
      "div",
      { class: "editor" },
      h(
        "div",
        { class: "editor-main" },
        h("section", { class: "card", "aria-labelledby": "wf-steps-title" }, h("h2", { id: "wf-steps-title" }, "Steps"), h("p", { class: "help" }, "Each step may have a name (later conditions read steps.<name>) and an “if” condition; a step whose condition is false is skipped."), list),
        h(
          "section",
          { class: "card", "aria-labelledby": "wf-cancels-label" },
          h("div", { class: "field" }, h("label", { for: "wf-cancels", id: "wf-cancels-label" }, "Cancels runs of (event types)"), cancelsInput, h("p", { id: "wf-cancels-help", class: "help" }, "An event of this type stops the unfinished runs of these types for the same user. Separate them with commas."), cancelsError),
        ),
        h("div", { class: "actions sticky-actions" }, save, saveStatus),
        h("section", { class: "card", "aria-labelledby": "wf-versions-title" }, h("h2", { id: "wf-versions-title" }, "Versions"), versionsBox),
        h(
          "section",
          { class: "card", "aria-labelledby": "wf-runs-title" },
          h("div", { class: "page-head" }, h("h2", { id: "wf-runs-title" }, "Recent runs"), runsRefresh),
          runsBanner,
          runsTableWrap,
          runsEmpty,
          h("div", { class: "list-foot" }, runsStatus, runsMore),
        ),
      ),
      h(
        "aside",
        { class: "editor-side" },
        h(
          "section",
          { class: "card", "aria-labelledby": "wf-preview-title" },
          h("h2", { id: "wf-preview-title" }, "Dry run"),
          h("div", { class: "field" }, h("label", { for: "wf-preview-payload" }, "Payload (JSON)"), payloadInput, payloadError),
          h("div", { class: "field" }, h("label", { for: "wf-preview-user" }, "User id"), userInput, h("p", { class: "help" }, "A stored recipient, else a sample user. Sends are taken as delivered and unread.")),
          h("div", { class: "actions" }, previewButton),
          previewBanner,
          previewOut,
        ),
      ),
    ),
  );

  ctx.setLeaveGuard(() => (dirty ? "The workflow has changes that are not saved." : null));
  const changed = () => {
    dirty = true;
    saveStatus.textContent = "Unsaved changes.";
  };

  // --- the step list --------------------------------------------------------------------

  function renderSteps(focusId) {
    slots = new Map();
    setChildren(list, stepList(steps, "steps", "root"));
    if (focusId) document.getElementById(focusId)?.focus();
  }

  /** A list of steps (the workflow's, or a branch arm's) with its "add a step" control. */
  function stepList(items, apiPath, key) {
    const typeSelect = h("select", { id: `add-step-type-${key}`, "aria-label": "Type of the step to add" }, STEP_TYPES.map((t) => h("option", { value: t.value }, t.label)));
    const add = h("button", { type: "button", class: "btn small", id: `add-step-${key}` }, "Add step");
    add.addEventListener("click", () => {
      items.push(newStep(typeSelect.value));
      changed();
      renderSteps(`step-${key === "root" ? "" : `${key}-`}${items.length - 1}-name`);
    });
    return h(
      "div",
      { class: "wf-list", "data-list": apiPath },
      items.length ? h("ol", { class: "wf-steps" }, items.map((step, i) => stepCard(items, i, `${apiPath}[${i}]`, key === "root" ? String(i) : `${key}-${i}`))) : h("p", { class: "muted wf-none" }, "No steps."),
      h("div", { class: "wf-add" }, typeSelect, add),
    );
  }

  function field(step, id, apiField, label, input, help) {
    const error = h("p", { id: `${id}-error`, class: "field-error", role: "alert", hidden: true });
    input.id = id;
    input.setAttribute("aria-describedby", `${help ? `${id}-help ` : ""}${id}-error`);
    slots.set(apiField, { error, input });
    return h("div", { class: "field" }, h("label", { for: id }, label), input, help ? h("p", { id: `${id}-help`, class: "help" }, help) : null, error);
  }

  function text(step, prop, { number = false, duration = false, placeholder = "" } = {}) {
    const input = h("input", { autocomplete: "off", spellcheck: "false", placeholder, value: step[prop] ?? "" });
    input.addEventListener("input", () => {
      const raw = input.value;
      step[prop] = raw.trim() === "" ? "" : number ? Number(raw) : duration ? durationValue(raw) : raw;
      changed();
    });
    if (number) input.type = "number";
    return input;
  }

  function stepCard(items, index, apiPath, key) {
    const step = items[index];
    const label = step.name || `${step.type} ${index + 1}`;
    const button = (id, text, title, onclick, disabled) => h("button", { type: "button", class: "btn ghost small", id, "aria-label": `${title} ${label}`, title, disabled, onclick }, text);
    const moveUp = button(`step-${key}-up`, "↑", "Move up step", () => move(-1), index === 0);
    const moveDown = button(`step-${key}-down`, "↓", "Move down step", () => move(1), index === items.length - 1);
    const remove = button(`step-${key}-remove`, "Remove", "Remove step", () => {
      items.splice(index, 1);
      changed();
      renderSteps();
    });
    function move(delta) {
      const [taken] = items.splice(index, 1);
      items.splice(index + delta, 0, taken);
      changed();
      // Keep focus on the same button of the moved step, so the keyboard can keep moving it.
      const movedKey = key.replace(/\d+$/, String(index + delta));
      const same = `step-${movedKey}-${delta < 0 ? "up" : "down"}`;
      renderSteps(same);
      // At the top (or bottom) that button is disabled: the other one takes focus.
      if (document.activeElement?.id !== same) document.getElementById(`step-${movedKey}-${delta < 0 ? "down" : "up"}`)?.focus();
    }
    const stepError = h("p", { id: `step-${key}-error`, class: "field-error", role: "alert", hidden: true });
    slots.set(apiPath, { error: stepError, input: null });

    const fields = [
      field(step, `step-${key}-name`, `${apiPath}.name`, "Name", text(step, "name", { placeholder: `${step.type}_…` })),
      field(step, `step-${key}-if`, `${apiPath}.if`, "If (optional)", text(step, "if", { placeholder: "e.g. user.email is not none" })),
      ...typeFields(step, apiPath, key),
    ];
    const card = h(
      "li",
      { class: `wf-step wf-${step.type}`, "data-path": apiPath, "data-type": step.type, id: `step-${key}` },
      h("div", { class: "wf-step-head" }, h("span", { class: "badge wf-type" }, STEP_TYPES.find((t) => t.value === step.type)?.label ?? step.type), h("span", { class: "wf-step-title" }, label), h("span", { class: "spacer" }), moveUp, moveDown, remove),
      stepError,
      h("div", { class: "wf-fields" }, fields),
    );
    if (step.type === "branch") {
      const thenKey = `${key}-then`;
      const elseKey = `${key}-else`;
      step.then ||= [];
      step.else ||= [];
      card.append(
        h("div", { class: "wf-arm", "data-arm": "then" }, h("h3", {}, "Then"), stepList(step.then, `${apiPath}.then`, thenKey)),
        h("div", { class: "wf-arm", "data-arm": "else" }, h("h3", {}, "Else"), stepList(step.else, `${apiPath}.else`, elseKey)),
      );
    }
    return card;
  }

  function typeFields(step, apiPath, key) {
    const id = (name) => `step-${key}-${name}`;
    switch (step.type) {
      case "send": {
        if (step.channel && !step.channels) {
          step.channels = [step.channel];
          delete step.channel;
        }
        step.channels ||= [];
        const error = h("p", { id: `${id("channels")}-error`, class: "field-error", role: "alert", hidden: true });
        const boxes = CHANNELS.map((c) => {
          const value = c.value.toLowerCase();
          const box = h("input", { type: "checkbox", id: `${id("channel")}-${value}`, checked: step.channels.includes(value) });
          box.addEventListener("change", () => {
            step.channels = CHANNELS.map((x) => x.value.toLowerCase()).filter((v) => (v === value ? box.checked : step.channels.includes(v)));
            changed();
          });
          return h("label", { class: "choice", for: box.id }, box, c.label);
        });
        const group = h("fieldset", { class: "field", "aria-describedby": error.id }, h("legend", {}, "Channels"), h("div", { class: "choices" }, boxes), error);
        slots.set(`${apiPath}.channels`, { error, input: null });
        slots.set(`${apiPath}.channel`, { error, input: null });
        const select = h(
          "select",
          {},
          h("option", { value: "" }, typeTemplate ? `The event type's (${typeTemplate})` : "The event type's"),
          templates.map((t) => h("option", { value: t.slug, selected: step.template === t.slug }, `${t.name} (${t.slug})`)),
          step.template && !templates.some((t) => t.slug === step.template) ? h("option", { value: step.template, selected: true }, step.template) : null,
        );
        select.addEventListener("change", () => {
          step.template = select.value;
          changed();
        });
        return [group, field(step, id("template"), `${apiPath}.template`, "Template", select)];
      }
      case "delay": {
        const mode = "until" in step ? "until" : "at" in step ? "at" : "duration";
        const select = h(
          "select",
          {},
          [
            ["duration", "For a duration"],
            ["until", "Until a time from the payload"],
            ["at", "Until a time of day (the user's zone)"],
          ].map(([v, l]) => h("option", { value: v, selected: v === mode }, l)),
        );
        select.addEventListener("change", () => {
          for (const k of ["duration", "until", "offset", "at"]) delete step[k];
          step[select.value] = select.value === "duration" ? "1h" : select.value === "at" ? "09:00" : "payload.";
          changed();
          renderSteps(id("mode"));
        });
        const out = [field(step, id("mode"), `${apiPath}.mode`, "Wait", select)];
        if (mode === "duration") out.push(field(step, id("duration"), `${apiPath}.duration`, "Duration", text(step, "duration", { duration: true, placeholder: "90s, 1h30m, 2d" }), "Seconds, or 90s, 1h30m, 2d."));
        if (mode === "until") {
          out.push(field(step, id("until"), `${apiPath}.until`, "Until", text(step, "until", { placeholder: "payload.appointment_at" }), "An expression giving an ISO 8601 time."));
          out.push(field(step, id("offset"), `${apiPath}.offset`, "Offset (optional)", text(step, "offset", { duration: true, placeholder: "-1h" })));
        }
        if (mode === "at") out.push(field(step, id("at"), `${apiPath}.at`, "At", text(step, "at", { placeholder: "09:00" })));
        return out;
      }
      case "branch":
        return [field(step, id("condition"), `${apiPath}.condition`, "Condition", text(step, "condition", { placeholder: "steps.inapp.read == false" }), "True: the Then steps run; false: the Else steps.")];
      case "throttle":
        return [
          field(step, id("limit"), `${apiPath}.limit`, "Limit (runs)", text(step, "limit", { number: true })),
          field(step, id("window"), `${apiPath}.window`, "Per window", text(step, "window", { duration: true, placeholder: "1h" })),
        ];
      case "digest":
        return [field(step, id("window"), `${apiPath}.window`, "Window", text(step, "window", { duration: true, placeholder: "1h" }), "The first run waits it out and collects the runs that reach this step meanwhile.")];
      case "fetch": {
        const method = h("select", {}, ["GET", "POST"].map((m) => h("option", { value: m, selected: (step.method || "GET") === m }, m)));
        method.addEventListener("change", () => {
          step.method = method.value;
          changed();
        });
        return [
          field(step, id("url"), `${apiPath}.url`, "URL", text(step, "url", { placeholder: "https://api.example.com/users/{{ user.id }}" })),
          field(step, id("method"), `${apiPath}.method`, "Method", method),
          field(step, id("timeout"), `${apiPath}.timeout`, "Timeout (s)", text(step, "timeout", { number: true })),
        ];
      }
      default:
        return [h("p", { class: "muted" }, `A ${step.type} step.`)];
    }
  }

  // --- typed errors at their step and field ---------------------------------------------

  function clearErrors() {
    for (const { error, input } of slots.values()) showFieldError(error, "", input);
    showFieldError(cancelsError, "", cancelsInput);
    setBanner(banner, null);
  }

  /** Put an API error at its field, else at its step, else in the banner. */
  function placeError(error, fallback) {
    const at = error.field || "";
    if (at === "cancels" || at.startsWith("cancels[")) {
      showFieldError(cancelsError, describeError(error), cancelsInput);
      cancelsInput.focus();
      return;
    }
    // The field itself, else the nearest step that holds it (`steps[1].then[0].x` → `steps[1].then[0]`).
    let path = at;
    while (path && !slots.has(path)) {
      const shorter = path.replace(/(\.[A-Za-z_]+|\[\d+\])$/, "");
      path = shorter === path ? "" : shorter;
    }
    const slot = path ? slots.get(path) : null;
    if (slot) {
      const words = `${error.step && !slot.input ? `Step ${error.step}: ` : ""}${describeError(error)}`;
      showFieldError(slot.error, words, slot.input);
      (slot.input || slot.error).scrollIntoView({ block: "center" });
      slot.input?.focus();
    } else {
      setBanner(fallback, error);
    }
  }

  function cancelsValue() {
    return cancelsInput.value.split(/[\s,;]+/).filter(Boolean);
  }

  save.addEventListener("click", () =>
    withProgress(save, "Saving…", async () => {
      clearErrors();
      try {
        const saved = unwrap((await graphql(SAVE, { type: eventType, steps: cleanSteps(steps), cancels: cancelsValue() })).saveWorkflow, "Workflow");
        if (!alive) return;
        loadWorkflow(saved);
        dirty = false;
        saveStatus.textContent = `Saved as version ${saved.version}.`;
        ctx.toast(`Workflow ${eventType} saved as version ${saved.version}.`);
        loadVersions();
      } catch (error) {
        if (!(error instanceof ApiError)) throw error;
        saveStatus.textContent = "Not saved.";
        placeError(error, banner);
      }
    }),
  );
  cancelsInput.addEventListener("input", changed);

  // --- the dry run ----------------------------------------------------------------------

  previewButton.addEventListener("click", () =>
    withProgress(previewButton, "Running…", async () => {
      clearErrors();
      setBanner(previewBanner, null);
      showFieldError(payloadError, "", payloadInput);
      let payload;
      try {
        payload = JSON.parse(payloadInput.value || "{}");
      } catch (error) {
        showFieldError(payloadError, `The payload is not valid JSON: ${error.message}`, payloadInput);
        payloadInput.focus();
        return;
      }
      try {
        const preview = unwrap(
          (await graphql(PREVIEW, { type: eventType, payload, user: userInput.value.trim() || null, steps: cleanSteps(steps) })).previewWorkflow,
          "WorkflowPreview",
        );
        if (alive) showPreview(preview);
      } catch (error) {
        if (!(error instanceof ApiError)) throw error;
        setChildren(previewOut);
        if (error.field === "payload" || error.field?.startsWith("payload")) showFieldError(payloadError, describeError(error), payloadInput);
        else if (error.field === "userId") setBanner(previewBanner, error);
        else placeError(error, previewBanner);
      }
    }),
  );

  function showPreview(preview) {
    setChildren(
      previewOut,
      h(
        "ol",
        { class: "wf-preview-steps" },
        preview.steps.map((s) =>
          h(
            "li",
            { class: ["wf-preview-step", s.runs ? "runs" : "skipped"], "data-path": s.path, "data-runs": String(s.runs) },
            h("div", { class: "wf-step-head" }, h("span", { class: "badge wf-type" }, s.type), h("span", { class: "wf-step-title mono" }, s.name), h("span", { class: "spacer" }), h("span", { class: s.runs ? "badge run-completed" : "badge" }, s.runs ? "runs" : "skipped")),
            s.condition === null || s.condition === undefined ? null : h("p", { class: "wf-condition" }, "Condition: ", h("code", {}, String(s.condition))),
            s.detail ? h("p", { class: "muted wf-detail" }, s.detail) : null,
            s.messages.map((m) =>
              h(
                "div",
                { class: "wf-message", "data-channel": m.channel },
                h("p", { class: "help" }, `${m.channel} · ${m.locale}`),
                m.subject ? h("p", { class: "wf-message-subject" }, h("strong", {}, m.subject)) : null,
                m.title ? h("p", { class: "wf-message-title" }, h("strong", {}, m.title)) : null,
                h("pre", { class: "wf-message-body" }, m.body),
              ),
            ),
          ),
        ),
      ),
    );
  }

  // --- versions -------------------------------------------------------------------------

  let versions = [];
  function showVersions() {
    if (!versions.length) {
      setChildren(versionsBox, h("p", { class: "muted" }, "No versions: this event type has no workflow yet."));
      return;
    }
    setChildren(
      versionsBox,
      h(
        "table",
        { class: "table compact", id: "wf-versions-table" },
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Version"), h("th", { scope: "col" }, "Saved"), h("th", { scope: "col" }, "By"), h("th", { scope: "col" }, "Steps"), h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Actions")))),
        h(
          "tbody",
          {},
          versions.map((v) =>
            h(
              "tr",
              { "data-version": String(v.version) },
              h("td", {}, `v${v.version} `, v.current ? h("span", { class: "badge run-completed" }, "current") : null),
              h("td", {}, formatDateTime(v.createdAt)),
              h("td", { class: "mono" }, v.createdBy || "—"),
              h("td", { class: "mono" }, v.steps.map((s) => s.type).join(" → ")),
              h("td", {}, h("button", { type: "button", class: "btn ghost small", "aria-label": `Load version ${v.version} into the editor`, onclick: () => {
                loadWorkflow(v);
                changed();
                saveStatus.textContent = `Version ${v.version} loaded; save to make it current again.`;
              } }, "Load")),
            ),
          ),
        ),
      ),
    );
  }

  async function loadVersions() {
    try {
      const data = await graphql(LOAD, { type: eventType });
      if (!alive) return;
      versions = data.workflowVersions;
      showVersions();
    } catch (error) {
      if (alive) setChildren(versionsBox, h("p", { class: "field-error" }, describeError(error)));
    }
  }

  function loadWorkflow(workflow) {
    steps = structuredClone(workflow?.steps || []);
    cancelsInput.value = (workflow?.cancels || []).join(", ");
    clearErrors();
    renderSteps();
  }

  // --- runs -----------------------------------------------------------------------------

  const runs = pagedTable({
    body: runsBody,
    tableWrap: runsTableWrap,
    empty: runsEmpty,
    more: runsMore,
    banner: runsBanner,
    columns: 6,
    loading: "Loading runs…",
    fetch: async (after) => (await graphql(RUNS, { filter: { eventType }, first: 20, after })).workflowRuns,
    row: (r) =>
      h(
        "tr",
        { "data-run-id": r.id, "data-status": r.status },
        h("td", {}, h("a", { class: "run-link", href: `#/workflow-runs/${encodeURIComponent(r.id)}` }, formatDateTime(r.createdAt))),
        h("td", { class: "mono" }, r.userId),
        h("td", {}, badgeFor(r.status)),
        h("td", {}, r.workflowVersion ? `v${r.workflowVersion}` : "—"),
        h("td", { class: "mono" }, r.cursor ?? "—"),
        h("td", { class: "optional" }, r.dueAt ? formatDateTime(r.dueAt) : "—"),
      ),
    done({ shown, hasMore }) {
      if (!shown) setChildren(runsEmpty, emptyState("No runs yet.", "A run starts for each user an event of this type reaches (plain one-send workflows are sent without runs)."));
      runsStatus.textContent = shown ? `Showing ${shown} run${shown === 1 ? "" : "s"}${hasMore ? "; there are more" : ""}.` : "";
    },
  });
  runsRefresh.addEventListener("click", () => withProgress(runsRefresh, "Refreshing…", () => runs.load()));

  // --- start ----------------------------------------------------------------------------

  setChildren(list, spinner("Loading the workflow…"));
  graphql(LOAD, { type: eventType })
    .then((data) => {
      if (!alive) return;
      templates = data.templates.edges.map((e) => e.node);
      typeTemplate = data.eventTypes.find((t) => t.name === eventType)?.templateSlug ?? null;
      versions = data.workflowVersions;
      loadWorkflow(data.workflow);
      showVersions();
      saveStatus.textContent = data.workflow ? `Version ${data.workflow.version} is current.` : "No workflow yet.";
    })
    .catch((error) => {
      if (!alive) return;
      setChildren(list);
      setBanner(banner, error);
    });
  runs.load();
  return () => {
    alive = false;
    runs.stop();
  };
}

// --- a run's timeline ---------------------------------------------------------------------

export function runView(root, { params }) {
  const box = h("div", { id: "run-detail" }, spinner("Loading the run…"));
  const banner = h("div", { class: "banner-slot", hidden: true });
  const crumbs = h("p", { class: "crumbs" }, h("a", { href: "#/workflows" }, "Workflows"), " / ");
  setChildren(root, crumbs, h("div", { class: "page-head" }, pageTitle("Workflow run")), banner, box);
  let timer = null;
  let alive = true;

  async function load() {
    let run;
    try {
      run = (await graphql(RUN, { id: params.id })).workflowRun;
    } catch (error) {
      if (alive) setBanner(banner, error, { retry: load });
      return;
    }
    if (!alive) return;
    setBanner(banner, null);
    if (!run) {
      setChildren(box, emptyState("No such run.", "It may have been removed with its event's history."));
      return;
    }
    setChildren(crumbs, h("a", { href: "#/workflows" }, "Workflows"), " / ", h("a", { href: `#/workflows/${encodeURIComponent(run.eventType)}` }, run.eventType), " / ");
    show(run);
    // A run still going is followed until it ends.
    if (!FINAL.has(run.status)) timer = setTimeout(load, 1000);
  }

  function show(run) {
    const facts = [
      ["Status", h("span", { id: "run-status" }, badgeFor(run.status))],
      ["Event type", h("a", { href: `#/workflows/${encodeURIComponent(run.eventType)}` }, run.eventType)],
      ["Event", h("code", {}, run.eventId)],
      ["User", h("a", { href: `#/history?userId=${encodeURIComponent(run.userId)}` }, run.userId)],
      ["Version", run.workflowVersion ? `v${run.workflowVersion}` : "—"],
      ["Next step", run.cursor ?? "—"],
      ["Waiting until", run.dueAt ? formatDateTime(run.dueAt) : "—"],
      ["Cancel key", run.cancelKey ?? "—"],
      ["Started", formatDateTime(run.createdAt)],
      ["Finished", run.finishedAt ? formatDateTime(run.finishedAt) : "—"],
    ];
    setChildren(
      box,
      h("div", { class: "card" }, h("dl", { class: "facts" }, facts.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])), run.error ? h("p", { class: "field-error", id: "run-error" }, run.error) : null),
      h("h2", { class: "wf-timeline-title" }, "Timeline"),
      run.steps.length
        ? h(
            "ol",
            { class: "timeline wf-timeline", id: "run-timeline" },
            run.steps.map((s) => {
              const outcome = s.outcome || {};
              const eventId = outcome.event_id;
              return h(
                "li",
                { "data-path": s.path, "data-status": s.status, "data-outcome": outcome.status ?? "" },
                h("div", { class: "wf-step-head" }, h("span", { class: "badge wf-type" }, s.type), h("strong", { class: "mono" }, s.name), h("span", { class: "muted mono" }, ` at ${s.path}`), h("span", { class: "spacer" }), s.status === "done" ? null : badgeFor(s.status), outcome.status ? h("span", { class: `badge wf-outcome status-${outcome.status}` }, outcome.status) : null),
                h("p", { class: "muted" }, h("time", { datetime: s.startedAt }, formatDateTime(s.startedAt)), " → ", s.finishedAt ? h("time", { datetime: s.finishedAt }, formatDateTime(s.finishedAt)) : "running", s.attempts > 1 ? ` · ${s.attempts} attempts (a worker stopped during the step)` : " · 1 attempt"),
                h("p", { class: "wf-summary" }, outcomeSummary(s.type, outcome)),
                eventId ? h("p", {}, h("a", { class: "run-deliveries", href: `#/history?eventId=${encodeURIComponent(eventId)}` }, "Its deliveries in the history")) : null,
                h("details", {}, h("summary", {}, "Outcome"), h("pre", { class: "wf-outcome-json" }, jsonText(outcome))),
              );
            }),
          )
        : h("p", { class: "muted" }, "No step has started yet."),
    );
  }

  load();
  return () => {
    alive = false;
    clearTimeout(timer);
  };
}
