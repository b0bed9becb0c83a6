// The panel's and the record viewer's CSS (JupyterLab CSS variables only, so it follows the
// light and dark themes), injected once at activation or by the first record viewer.
export const CSS = `
.jp-wb-panel { background: var(--jp-layout-color1); color: var(--jp-ui-font-color1);
  font-family: var(--jp-ui-font-family); font-size: var(--jp-ui-font-size1); overflow-y: auto; }
.jp-wb-section { padding: 6px 10px; border-bottom: var(--jp-border-width) solid var(--jp-border-color2); }
.jp-wb-heading { font-size: var(--jp-ui-font-size2); font-weight: 600; margin: 4px 0 6px;
  display: flex; align-items: center; justify-content: space-between; }
.jp-wb-list { list-style: none; margin: 0; padding: 0; }
.jp-wb-analysis { padding: 4px 6px; cursor: pointer; border-radius: var(--jp-border-radius); }
.jp-wb-analysis:hover { background: var(--jp-layout-color2); }
.jp-wb-analysis.jp-mod-selected { background: var(--jp-brand-color3); color: var(--jp-ui-font-color0); }
.jp-wb-analysis-title { font-weight: 600; }
.jp-wb-muted { color: var(--jp-ui-font-color2); }
.jp-wb-error { color: var(--jp-error-color1); white-space: pre-wrap; word-break: break-word; }
.jp-wb-ok { color: var(--jp-success-color1); font-weight: 600; }
.jp-wb-mono { font-family: var(--jp-code-font-family); font-size: var(--jp-code-font-size); }
.jp-wb-field { display: flex; flex-direction: column; gap: 2px; margin-bottom: 6px; }
.jp-wb-field-checkbox { flex-direction: row-reverse; justify-content: flex-end; align-items: center; gap: 6px; }
.jp-wb-type { color: var(--jp-ui-font-color2); font-size: var(--jp-ui-font-size0); }
.jp-wb-help { color: var(--jp-ui-font-color2); font-size: var(--jp-ui-font-size0); }
.jp-wb-input { background: var(--jp-input-background); color: var(--jp-ui-font-color1);
  border: var(--jp-border-width) solid var(--jp-input-border-color); border-radius: var(--jp-border-radius);
  padding: 3px 5px; font-size: var(--jp-ui-font-size1); }
.jp-wb-input:focus { border-color: var(--jp-input-active-border-color); outline: none; }
.jp-wb-actions { display: flex; gap: 4px; flex-wrap: wrap; margin-top: 4px; }
.jp-wb-button { background: var(--jp-layout-color2); color: var(--jp-ui-font-color1);
  border: var(--jp-border-width) solid var(--jp-border-color1); border-radius: var(--jp-border-radius);
  padding: 2px 8px; cursor: pointer; font-size: var(--jp-ui-font-size1); }
.jp-wb-button:hover { background: var(--jp-layout-color3); }
.jp-wb-button.jp-mod-accept { background: var(--jp-brand-color1); color: var(--jp-ui-inverse-font-color1); border-color: var(--jp-brand-color1); }
.jp-wb-button.jp-mod-warn { color: var(--jp-warn-color0); border-color: var(--jp-warn-color1); }
.jp-wb-button.jp-wb-link { border: none; background: none; padding: 0 4px; }
.jp-wb-button:disabled { opacity: 0.5; cursor: default; }
.jp-wb-run { padding: 6px 0; border-top: var(--jp-border-width) solid var(--jp-border-color3); }
.jp-wb-run-head { display: flex; justify-content: space-between; gap: 6px; }
.jp-wb-run-name { font-weight: 600; }
.jp-wb-badge { border-radius: 8px; padding: 0 6px; font-size: var(--jp-ui-font-size0);
  background: var(--jp-layout-color3); }
.jp-wb-status-complete .jp-wb-badge { background: var(--jp-success-color3); color: var(--jp-ui-font-color0); }
.jp-wb-status-failed .jp-wb-badge { background: var(--jp-error-color3); color: var(--jp-ui-font-color0); }
.jp-wb-status-running .jp-wb-badge { background: var(--jp-info-color3); color: var(--jp-ui-font-color0); }
.jp-wb-status-queued .jp-wb-badge { background: var(--jp-warn-color3); color: var(--jp-ui-font-color0); }
.jp-wb-sweep-toggle { padding-bottom: 4px; margin-bottom: 8px; border-bottom: var(--jp-border-width) dashed var(--jp-border-color2); }
.jp-wb-sweep-size { margin: 4px 0; font-weight: 600; color: var(--jp-ui-font-color1); }
.jp-wb-sweep-size.jp-wb-error { font-weight: normal; color: var(--jp-error-color1); }
.jp-wb-progress { width: 100%; height: 6px; accent-color: var(--jp-brand-color1); }
.jp-wb-record { padding: 12px 20px; overflow: auto; background: var(--jp-layout-color0);
  color: var(--jp-content-font-color1); font-family: var(--jp-content-font-family); }
.jp-wb-record h1 { font-size: var(--jp-content-font-size5); }
.jp-wb-record h2 { font-size: var(--jp-content-font-size3); margin-top: 16px;
  border-bottom: var(--jp-border-width) solid var(--jp-border-color2); }
.jp-wb-kv { border-collapse: collapse; }
.jp-wb-kv th { text-align: left; padding: 2px 12px 2px 0; color: var(--jp-ui-font-color2); font-weight: normal; }
.jp-wb-kv td { padding: 2px 0; word-break: break-all; }
.jp-wb-record h3 { font-size: var(--jp-content-font-size2); margin: 8px 0 2px; }
.jp-wb-warn { color: var(--jp-warn-color1); }
.jp-wb-verdict { margin: 8px 0; padding: 6px 10px; border-radius: var(--jp-border-radius);
  border-left: 4px solid var(--jp-border-color1); background: var(--jp-layout-color1); }
.jp-wb-verdict.jp-wb-ok { border-left-color: var(--jp-success-color1); }
.jp-wb-verdict.jp-wb-error { border-left-color: var(--jp-error-color1); }
.jp-wb-verdict.jp-wb-warn { border-left-color: var(--jp-warn-color1); }
.jp-wb-verdict p { margin: 2px 0; }
.jp-wb-failures th { color: var(--jp-ui-font-color1); font-weight: 600; }
.jp-wb-failures td { padding: 2px 12px 2px 0; color: var(--jp-content-font-color1); }
.jp-wb-failures td:first-child { word-break: normal; white-space: nowrap; }
.jp-OutputArea-output.jp-wb-record-viewer { background: transparent; padding: 4px 0; }
`;

export function injectStyle(doc: Document = document): void {
  if (doc.getElementById("jp-wb-style")) return;
  const el = doc.createElement("style");
  el.id = "jp-wb-style";
  el.textContent = CSS;
  doc.head.append(el);
}
