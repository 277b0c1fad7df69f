/** The element's stylesheet. Every colour and size is a CSS custom property with a default;
 * every piece can also be styled from outside through `::part(...)`. The defaults meet
 * WCAG AA contrast (the browser tests run axe-core on them). */
export const STYLES = `
:host {
  --_accent: var(--herald-inbox-accent, #1d4ed8);
  --_bg: var(--herald-inbox-background, #ffffff);
  --_fg: var(--herald-inbox-color, #1f2937);
  --_muted: var(--herald-inbox-muted-color, #4b5563);
  --_border: var(--herald-inbox-border-color, #d1d5db);
  --_unread-bg: var(--herald-inbox-unread-background, #eff6ff);
  --_badge-bg: var(--herald-inbox-badge-background, #b91c1c);
  --_badge-fg: var(--herald-inbox-badge-color, #ffffff);
  --_focus: var(--herald-inbox-focus-color, #2563eb);
  --_radius: var(--herald-inbox-radius, 8px);
  position: relative;
  display: inline-block;
  font: var(--herald-inbox-font, 14px/1.4 system-ui, sans-serif);
  color: var(--_fg);
}
:host([hidden]), [hidden] { display: none !important; }
button { font: inherit; color: inherit; cursor: pointer; }
button:focus-visible, [tabindex]:focus-visible {
  outline: 2px solid var(--_focus); outline-offset: 2px;
}
.sr-only {
  position: absolute; width: 1px; height: 1px; padding: 0; margin: -1px; overflow: hidden;
  clip: rect(0, 0, 0, 0); white-space: nowrap; border: 0;
}
.bell {
  position: relative; display: inline-flex; align-items: center; justify-content: center;
  width: 40px; height: 40px; border-radius: 50%; border: 1px solid var(--_border);
  background: var(--_bg);
}
.bell svg { width: 22px; height: 22px; fill: currentColor; }
.badge {
  position: absolute; top: -4px; right: -4px; min-width: 18px; height: 18px; padding: 0 5px;
  box-sizing: border-box; border-radius: 9px; background: var(--_badge-bg);
  color: var(--_badge-fg); font-size: 11px; font-weight: 700; line-height: 18px;
  text-align: center;
}
.panel {
  position: absolute; z-index: 1000; top: calc(100% + 8px); right: 0;
  width: var(--herald-inbox-width, 380px); max-width: calc(100vw - 16px);
  background: var(--_bg); border: 1px solid var(--_border); border-radius: var(--_radius);
  box-shadow: 0 10px 30px rgb(0 0 0 / 0.15); display: flex; flex-direction: column;
}
:host([inline]) .panel { position: static; box-shadow: none; }
.header {
  display: flex; align-items: center; justify-content: space-between; gap: 8px;
  padding: 10px 12px; border-bottom: 1px solid var(--_border);
}
.header h2 { margin: 0; font-size: 1em; }
.link {
  background: none; border: 0; padding: 4px 6px; color: var(--_accent); border-radius: 4px;
}
.link:disabled { color: var(--_muted); cursor: default; }
.tabs { display: flex; gap: 4px; padding: 6px 8px 0; border-bottom: 1px solid var(--_border); }
.tab {
  background: none; border: 0; border-bottom: 2px solid transparent; padding: 6px 10px;
  color: var(--_muted);
}
.tab[aria-selected="true"] { color: var(--_accent); border-bottom-color: var(--_accent); }
.connection, .error {
  margin: 0; padding: 6px 12px; font-size: 0.9em; background: #fef3c7; color: #78350f;
}
.error { background: #fee2e2; color: #7f1d1d; }
.feed { max-height: var(--herald-inbox-max-height, 420px); overflow-y: auto; }
.list { list-style: none; margin: 0; padding: 0; }
.item { display: flex; align-items: stretch; border-bottom: 1px solid var(--_border); }
.item[data-read="false"] { background: var(--_unread-bg); }
.open {
  flex: 1; display: grid; gap: 2px; text-align: left; background: none; border: 0;
  padding: 10px 12px; min-width: 0;
}
.title { font-weight: 600; }
.item[data-read="true"] .title { font-weight: 400; }
.body { color: var(--_fg); overflow-wrap: anywhere; }
.time { color: var(--_muted); font-size: 0.85em; }
.dot {
  display: inline-block; width: 8px; height: 8px; margin-right: 6px; border-radius: 50%;
  background: var(--_accent); vertical-align: middle;
}
.item[data-read="true"] .dot { visibility: hidden; }
.content { flex: 1; display: grid; min-width: 0; }
.actions { display: flex; flex-wrap: wrap; gap: 6px; padding: 0 12px 10px; }
.action {
  font: inherit; font-size: 0.9em; padding: 4px 10px; border-radius: var(--_radius);
  border: 1px solid var(--_border); background: var(--_bg); color: var(--_accent);
  text-decoration: none; cursor: pointer;
}
.action.primary { background: var(--_accent); border-color: var(--_accent); color: #fff; }
.archive {
  background: none; border: 0; padding: 0 12px; color: var(--_muted);
}
.archive svg { width: 18px; height: 18px; fill: currentColor; }
.state { margin: 0; padding: 24px 12px; text-align: center; color: var(--_muted); }
.more {
  display: block; width: 100%; padding: 10px; background: none; border: 0;
  color: var(--_accent);
}
.toasts {
  position: fixed; z-index: 1001; right: 16px; bottom: 16px; display: grid; gap: 8px;
  width: min(340px, calc(100vw - 32px));
}
.toast {
  display: flex; gap: 8px; align-items: flex-start; padding: 10px 12px;
  background: var(--_bg); color: var(--_fg); border: 1px solid var(--_border);
  border-left: 4px solid var(--_accent); border-radius: var(--_radius);
  box-shadow: 0 6px 20px rgb(0 0 0 / 0.15);
}
.toast .text { flex: 1; display: grid; gap: 2px; min-width: 0; }
.toast .dismiss { background: none; border: 0; padding: 2px 6px; color: var(--_muted); }
`;
