// Tenants (admins of the install): the products or customers Herald sends for. The list by id,
// and one dialog that makes a tenant or changes its name and branding (the id is fixed once
// made); errors from the API are shown at their fields.

import { ERROR_FIELDS, graphql, unwrap } from "../api.js";
import { emptyState, formatDateTime, h, pageTitle, setChildren, spinner, withProgress } from "../dom.js";
import { openDialog } from "../dialog.js";
import { setBanner, showFieldError, showFormError } from "../errors.js";

const FIELDS = "id name logoUrl primaryColor createdBy createdAt updatedAt";
const LIST = `query Tenants { tenants { ${FIELDS} } }`;
const SAVE = `mutation SaveTenant($input: SaveTenantInput!) {
  saveTenant(input: $input) { __typename ... on Tenant { ${FIELDS} } ${ERROR_FIELDS} }
}`;

function field(id, label, help, attrs = {}) {
  const input = h("input", { id, autocomplete: "off", "aria-describedby": `${id}-help ${id}-error`, ...attrs });
  const error = h("p", { id: `${id}-error`, class: "field-error", role: "alert", hidden: true });
  const wrap = h("div", { class: "field" }, h("label", { for: id }, label), input, h("p", { id: `${id}-help`, class: "help" }, help), error);
  return { input, error, wrap };
}

/** The dialog for a new tenant (`tenant` null) or for changing one. */
function openForm(tenant, { onSaved }) {
  const fields = {
    id: field("tenant-id", "Id", "Lowercase letters, digits and '-', e.g. acme. Tokens carry it in their tenant claim; it cannot change.", { maxlength: "63", value: tenant?.id ?? "", readonly: tenant ? true : null }),
    name: field("tenant-name", "Name", "Shown to recipients as {{ tenant.name }}.", { maxlength: "200", value: tenant?.name ?? "" }),
    logoUrl: field("tenant-logo", "Logo URL (optional)", "An http(s) address, {{ tenant.logo_url }} in templates.", { type: "url", value: tenant?.logoUrl ?? "" }),
    primaryColor: field("tenant-color", "Primary colour (optional)", "Like #1a2b3c, {{ tenant.primary_color }} in templates.", { maxlength: "7", value: tenant?.primaryColor ?? "" }),
  };
  const banner = h("div", { class: "banner-slot", hidden: true });
  const save = h("button", { type: "submit", class: "btn primary", id: "tenant-save", form: "tenant-form" }, tenant ? "Save" : "Create tenant");
  const cancel = h("button", { type: "button", class: "btn ghost" }, "Cancel");
  const form = h("form", { id: "tenant-form", novalidate: true }, banner, Object.values(fields).map((f) => f.wrap));
  const { close } = openDialog({ id: "tenant-dialog", title: tenant ? `Tenant ${tenant.id}` : "New tenant", body: form, actions: [cancel, save] });
  cancel.addEventListener("click", close);
  (tenant ? fields.name : fields.id).input.focus();

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    setBanner(banner, null);
    for (const f of Object.values(fields)) showFieldError(f.error, "", f.input);
    const optional = (f) => f.input.value.trim() || null;
    const input = {
      id: fields.id.input.value.trim(),
      name: fields.name.input.value,
      logoUrl: optional(fields.logoUrl),
      primaryColor: optional(fields.primaryColor),
    };
    await withProgress(save, "Saving…", async () => {
      try {
        const saved = unwrap((await graphql(SAVE, { input })).saveTenant, "Tenant");
        close();
        onSaved(saved);
      } catch (error) {
        showFormError(error, fields, banner);
      }
    });
  });
}

export function render(root, { ctx }) {
  const banner = h("div", { class: "banner-slot", hidden: true });
  const body = h("tbody");
  const head = ["Id", "Name", "Branding", "Created", ""].map((t) => h("th", { scope: "col" }, t));
  const table = h("table", { class: "table", id: "tenants-table" }, h("caption", { class: "visually-hidden" }, "Tenants, by id."), h("thead", {}, h("tr", {}, head)), body);
  const tableWrap = h("div", { class: "table-wrap" }, table);
  const empty = h("div", { hidden: true });
  const create = h("button", { type: "button", class: "btn primary", id: "new-tenant" }, "New tenant");
  let stopped = false;

  setChildren(
    root,
    h("div", { class: "page-head" }, pageTitle("Tenants"), h("div", { class: "head-actions" }, create)),
    h("p", { class: "lead" }, "The products or customers this install sends for. Tokens and API keys bound to a tenant see only its templates, events, inbox items and campaigns; its templates may override the shared ones."),
    banner,
    tableWrap,
    empty,
  );

  function row(tenant) {
    const edit = h("button", { type: "button", class: "btn small edit-tenant" }, "Edit");
    edit.addEventListener("click", () => openForm(tenant, { onSaved: (saved) => { ctx.toast(`Tenant ${saved.id} saved.`); load(); } }));
    const color = tenant.primaryColor
      ? h("span", { class: "inline" }, h("span", { class: "swatch", style: `background:${tenant.primaryColor}`, "aria-hidden": "true" }), " ", h("span", { class: "mono" }, tenant.primaryColor))
      : null;
    const logo = tenant.logoUrl ? h("a", { href: tenant.logoUrl, target: "_blank", rel: "noopener noreferrer" }, "logo") : null;
    return h(
      "tr",
      { "data-tenant-id": tenant.id },
      h("td", { class: "mono" }, tenant.id),
      h("td", { class: "tenant-name" }, tenant.name),
      h("td", { class: "tenant-branding" }, color, logo ? " " : null, logo, !color && !logo ? h("span", { class: "muted" }, "None") : null),
      h("td", { title: `By ${tenant.createdBy ?? "?"}` }, formatDateTime(tenant.createdAt)),
      h("td", {}, edit),
    );
  }

  async function load() {
    setBanner(banner, null);
    setChildren(body, h("tr", {}, h("td", { colspan: "5" }, spinner("Loading tenants…"))));
    let tenants;
    try {
      tenants = (await graphql(LIST)).tenants;
    } catch (error) {
      if (stopped) return;
      setChildren(body);
      setBanner(banner, error);
      return;
    }
    if (stopped) return;
    tableWrap.hidden = tenants.length === 0;
    empty.hidden = tenants.length > 0;
    setChildren(empty, emptyState("No tenants.", "Without tenants Herald sends for one product; add one per product or customer.", h("button", { type: "button", class: "btn primary", onclick: () => create.click() }, "Add a tenant")));
    setChildren(body, tenants.map(row));
  }

  create.addEventListener("click", () => openForm(null, { onSaved: (saved) => { ctx.toast(`Tenant ${saved.id} created.`); load(); } }));
  load();
  return () => {
    stopped = true;
  };
}
