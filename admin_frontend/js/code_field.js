// A textarea with line numbers, for template text: a syntax error names a line, and the field
// marks that line in the gutter and under the text, with the message right below the field.

import { h, setChildren } from "./dom.js";

const LINE_HEIGHT = 20; // px; styles.css sets the same on .code textarea and .code-gutter

export function codeField({ id, label, value = "", rows = 4, hint = null, onInput }) {
  const textarea = h("textarea", {
    id,
    rows: String(rows),
    spellcheck: "false",
    wrap: "off",
    autocomplete: "off",
    "aria-describedby": `${id}-error${hint ? ` ${id}-hint` : ""}`,
  });
  textarea.value = value;
  const gutter = h("div", { class: "code-gutter", "aria-hidden": "true" });
  const band = h("div", { class: "code-band", "aria-hidden": "true", hidden: true });
  const error = h("p", { id: `${id}-error`, class: "field-error", role: "alert", hidden: true });
  const wrapper = h("div", { class: "code" }, gutter, h("div", { class: "code-text" }, band, textarea));
  const el = h(
    "div",
    { class: "field code-field" },
    h("label", { for: id }, label),
    hint ? h("p", { id: `${id}-hint`, class: "help" }, hint) : null,
    wrapper,
    error,
  );
  let errorLine = null;

  function drawGutter() {
    const count = Math.max(textarea.value.split("\n").length, rows);
    const numbers = [];
    for (let n = 1; n <= count; n++) {
      numbers.push(h("span", { class: n === errorLine ? "line error-line" : "line", "data-line": String(n) }, String(n)));
    }
    setChildren(gutter, ...numbers);
    syncScroll();
  }

  function syncScroll() {
    gutter.scrollTop = textarea.scrollTop;
    if (errorLine) {
      band.style.transform = `translateY(${(errorLine - 1) * LINE_HEIGHT - textarea.scrollTop}px)`;
    }
  }

  textarea.addEventListener("input", () => {
    drawGutter();
    onInput?.(textarea.value);
  });
  textarea.addEventListener("scroll", syncScroll);
  drawGutter();

  return {
    el,
    textarea,
    get value() {
      return textarea.value;
    },
    /** Show `text` under the field; `line` (1-based) marks that line. Empty text clears. */
    setError(text, line = null) {
      errorLine = text && line ? line : null;
      band.hidden = !errorLine;
      el.classList.toggle("has-error", Boolean(text));
      if (text) {
        error.hidden = false;
        setChildren(error, text);
        textarea.setAttribute("aria-invalid", "true");
      } else {
        error.hidden = true;
        setChildren(error);
        textarea.removeAttribute("aria-invalid");
      }
      drawGutter();
    },
    /** Put the caret at the start of a line and scroll it into view. */
    revealLine(line) {
      const lines = textarea.value.split("\n");
      let offset = 0;
      for (let i = 0; i < Math.min(line - 1, lines.length); i++) offset += lines[i].length + 1;
      textarea.focus();
      textarea.setSelectionRange(offset, offset);
      textarea.scrollTop = Math.max(0, (line - 2) * LINE_HEIGHT);
      syncScroll();
    },
  };
}
