/**
 * PatchPreview widget (`workbench.widgets.PatchPreview`): metrics before -> after, a strength
 * slider (debounced; Python recomputes `payload`), and per prompt the before/after
 * continuations token by token with changed tokens marked, plus the watched features'
 * activations before vs after.
 */

import type { PatchPreviewPayload, PatchPreviewState, Render } from "./contract";
import { DEBOUNCE_MS } from "./contract";
import { BASE_CSS, createRoot, debounce, ensureStyle, h, setFlag } from "./dom";
import { formatDelta, formatNumber, tokenDiff } from "./selection";

const CSS = `${BASE_CSS}
.wb-patch-preview { padding: 6px; }
.wb-patch-preview .wb-controls { display: flex; align-items: center; gap: 8px; margin: 4px 0 8px; flex-wrap: wrap; }
.wb-patch-preview .wb-controls input[type="range"] { flex: 1 1 200px; max-width: 360px; accent-color: var(--jp-brand-color1, #1976d2); }
.wb-patch-preview .wb-strength-value { font-family: var(--jp-code-font-family, monospace); min-width: 4em; }
.wb-patch-preview .wb-kind { font-weight: 600; }
.wb-patch-preview .wb-status { color: var(--jp-ui-font-color2, #666); font-style: italic; }
.wb-patch-preview .wb-status:empty { display: none; }
.wb-patch-preview .wb-metrics { display: flex; flex-wrap: wrap; gap: 6px; margin-bottom: 8px; }
.wb-patch-preview .wb-metric {
  border: 1px solid var(--jp-border-color2, #ddd);
  border-radius: 4px;
  padding: 3px 8px;
  background: var(--jp-layout-color2, #f5f5f5);
}
.wb-patch-preview .wb-metric-name { color: var(--jp-ui-font-color2, #666); margin-right: 6px; }
.wb-patch-preview .wb-metric-delta { margin-left: 6px; font-family: var(--jp-code-font-family, monospace); }
.wb-patch-preview .wb-metric-delta.wb-up { color: var(--jp-warn-color1, #ef6c00); }
.wb-patch-preview .wb-metric-delta.wb-down { color: var(--jp-success-color1, #388e3c); }
.wb-patch-preview .wb-table { transition: opacity 0.15s; }
.wb-patch-preview.wb-busy .wb-table, .wb-patch-preview.wb-busy .wb-metrics { opacity: 0.45; pointer-events: none; }
.wb-patch-preview .wb-row {
  border-top: 1px solid var(--jp-border-color2, #ddd);
  padding: 6px 0;
  display: grid;
  grid-template-columns: minmax(0, 1fr) auto;
  gap: 4px 16px;
}
.wb-patch-preview .wb-prompt { grid-column: 1 / -1; font-weight: 600; white-space: pre-wrap; }
.wb-patch-preview .wb-gens { min-width: 0; }
.wb-patch-preview .wb-gen { display: flex; gap: 6px; align-items: baseline; }
.wb-patch-preview .wb-gen-label { color: var(--jp-ui-font-color2, #666); width: 3.5em; flex: none; font-size: 11px; }
.wb-patch-preview .wb-tokens { font-family: var(--jp-code-font-family, monospace); font-size: var(--jp-code-font-size, 12px); white-space: pre-wrap; word-break: break-word; }
.wb-patch-preview .wb-tok { border-radius: 2px; }
.wb-patch-preview mark.wb-changed {
  background: var(--jp-warn-color3, #ffe0b2);
  color: inherit;
  outline: 1px solid var(--jp-warn-color1, #ef6c00);
}
.wb-patch-preview .wb-replaced { text-decoration: line-through; text-decoration-color: var(--jp-ui-font-color3, #999); }
.wb-patch-preview .wb-bars { display: grid; grid-template-columns: auto 120px auto; gap: 1px 6px; align-items: center; font-size: 11px; }
.wb-patch-preview .wb-bars:empty { display: none; }
.wb-patch-preview .wb-feat { color: var(--jp-ui-font-color2, #666); }
.wb-patch-preview .wb-bar-pair { display: flex; flex-direction: column; gap: 1px; }
.wb-patch-preview .wb-bar { height: 5px; border-radius: 1px; min-width: 1px; }
.wb-patch-preview .wb-bar.wb-before { background: var(--jp-ui-font-color3, #9e9e9e); }
.wb-patch-preview .wb-bar.wb-after { background: var(--jp-brand-color1, #1976d2); }
.wb-patch-preview .wb-bar.wb-negative { opacity: 0.5; }
.wb-patch-preview .wb-bar-values { font-family: var(--jp-code-font-family, monospace); color: var(--jp-ui-font-color2, #666); white-space: nowrap; }
`;

type Payload = Partial<PatchPreviewPayload>;

function hasPreview(p: Payload | null | undefined): p is Payload & Pick<PatchPreviewPayload, "prompts"> {
  return !!p && Array.isArray(p.prompts);
}

function metricsStrip(p: Payload): HTMLElement {
  const strip = h("div", { class: "wb-metrics" });
  const before = p.metrics_before ?? {};
  const after = p.metrics_after ?? {};
  const names = [...Object.keys(before), ...Object.keys(after).filter((k) => !(k in before))];
  for (const name of names) {
    const b = before[name];
    const a = after[name];
    const delta = formatDelta(b, a);
    const d = typeof a === "number" && typeof b === "number" ? a - b : 0;
    strip.append(
      h(
        "div",
        { class: "wb-metric", "data-metric": name },
        h("span", { class: "wb-metric-name" }, name),
        h("span", { class: "wb-metric-before" }, formatNumber(b)),
        " → ",
        h("span", { class: "wb-metric-after" }, formatNumber(a)),
        delta ? h("span", { class: `wb-metric-delta${d > 0 ? " wb-up" : d < 0 ? " wb-down" : ""}` }, `(${delta})`) : null,
      ),
    );
  }
  return strip;
}

function tokenLine(label: string, tokens: readonly string[], flags: readonly boolean[], mode: "before" | "after"): HTMLElement {
  const line = h("div", { class: `wb-tokens wb-${mode}` });
  tokens.forEach((tok, j) => {
    const changed = flags[j] === true;
    if (changed && mode === "after") {
      line.append(h("mark", { class: "wb-tok wb-changed", "data-pos": j }, tok));
    } else {
      line.append(h("span", { class: `wb-tok${changed ? " wb-replaced" : ""}`, "data-pos": j }, tok));
    }
  });
  return h("div", { class: "wb-gen" }, h("span", { class: "wb-gen-label" }, label), line);
}

function barRow(feature: number, before: number | undefined, after: number | undefined, maxAbs: number): Node[] {
  const width = (v: number | undefined) =>
    typeof v === "number" && Number.isFinite(v) && maxAbs > 0 ? `${((Math.abs(v) / maxAbs) * 100).toFixed(1)}%` : "0";
  const bar = (v: number | undefined, cls: string) =>
    h("div", {
      class: `wb-bar ${cls}${typeof v === "number" && v < 0 ? " wb-negative" : ""}`,
      style: `width: ${width(v)}`,
      title: `${cls === "wb-before" ? "before" : "after"}: ${formatNumber(v)}`,
    });
  return [
    h("span", { class: "wb-feat" }, `#${feature}`),
    h("div", { class: "wb-bar-pair", "data-feature": feature }, bar(before, "wb-before"), bar(after, "wb-after")),
    h("span", { class: "wb-bar-values" }, `${formatNumber(before)} → ${formatNumber(after)}`),
  ];
}

/** The rows of the table (pure function of the payload; exported for tests). */
export function buildTable(p: Payload): HTMLElement {
  const table = h("div", { class: "wb-table" });
  const prompts = p.prompts ?? [];
  const features = p.features ?? [];
  let maxAbs = 0;
  for (const rows of [p.before_acts ?? [], p.after_acts ?? []]) {
    for (const row of rows) for (const v of row ?? []) if (Number.isFinite(v)) maxAbs = Math.max(maxAbs, Math.abs(v));
  }
  prompts.forEach((prompt, i) => {
    const beforeTokens = p.before_tokens?.[i] ?? (p.before?.[i] !== undefined ? [p.before[i] as string] : []);
    const afterTokens = p.after_tokens?.[i] ?? (p.after?.[i] !== undefined ? [p.after[i] as string] : []);
    const diff = tokenDiff(beforeTokens, afterTokens, p.changed?.[i]);
    const bars = h("div", { class: "wb-bars" });
    features.forEach((f, k) => bars.append(...barRow(f, p.before_acts?.[i]?.[k], p.after_acts?.[i]?.[k], maxAbs)));
    table.append(
      h(
        "div",
        { class: "wb-row", "data-prompt": i },
        h("div", { class: "wb-prompt" }, prompt),
        h(
          "div",
          { class: "wb-gens" },
          tokenLine("before", beforeTokens, diff.before, "before"),
          tokenLine("after", afterTokens, diff.after, "after"),
        ),
        bars,
      ),
    );
  });
  return table;
}

function sliderRange(model: { get(k: "strength_range"): PatchPreviewState["strength_range"] }, strength: number) {
  const r = model.get("strength_range") ?? [];
  let [min, max, step] = [Number(r[0]), Number(r[1]), Number(r[2])];
  if (!Number.isFinite(min)) min = Math.min(0, strength);
  if (!Number.isFinite(max) || max <= min) max = Math.max(min + 1, strength);
  if (!Number.isFinite(step) || step <= 0) step = (max - min) / 100;
  return { min, max, step };
}

const render: Render<PatchPreviewState> = ({ model, el }) => {
  ensureStyle(el, "wb-style-patch-preview", CSS);
  const root = createRoot(el, "patch-preview");

  const kind = h("span", { class: "wb-kind" });
  const slider = h("input", { type: "range", class: "wb-strength", "aria-label": "patch strength" });
  const value = h("span", { class: "wb-strength-value" });
  const status = h("span", { class: "wb-status", role: "status", "aria-live": "polite" });
  const controls = h("div", { class: "wb-controls" }, kind, h("label", {}, "strength"), slider, value, status);
  const error = h("div", { class: "wb-error", role: "alert" });
  const body = h("div", { class: "wb-body" });
  root.append(controls, error, body);

  let dragging = false;

  const syncSlider = () => {
    const strength = Number(model.get("strength"));
    const { min, max, step } = sliderRange(model, Number.isFinite(strength) ? strength : 0);
    slider.min = String(min);
    slider.max = String(max);
    slider.step = String(step);
    if (!dragging && Number.isFinite(strength)) {
      slider.value = String(strength);
      value.textContent = formatNumber(strength);
    }
  };

  const writeStrength = debounce((v: number) => {
    model.set("strength", v);
    model.save_changes();
  }, DEBOUNCE_MS.strength);

  const onInput = () => {
    dragging = true;
    const v = Number(slider.value);
    value.textContent = formatNumber(v);
    writeStrength(v);
  };
  const onChange = () => {
    // Release: send the final value now rather than after the debounce.
    writeStrength.flush();
    dragging = false;
  };
  slider.addEventListener("input", onInput);
  slider.addEventListener("change", onChange);

  const drawBody = () => {
    const p = model.get("payload");
    if (!hasPreview(p)) {
      body.replaceChildren(h("div", { class: "wb-muted" }, "No preview yet."));
      kind.textContent = "";
      setFlag(root, el, "prompts", "0");
      setFlag(root, el, "rendered", "1");
      return;
    }
    kind.textContent = typeof p.patch?.kind === "string" ? p.patch.kind : "patch";
    body.replaceChildren(metricsStrip(p), buildTable(p));
    setFlag(root, el, "prompts", String(p.prompts.length));
    setFlag(root, el, "rendered", "1");
  };

  const drawBusy = () => {
    const busy = !!model.get("busy");
    root.classList.toggle("wb-busy", busy);
    root.setAttribute("aria-busy", busy ? "true" : "false");
    setFlag(root, el, "busy", busy ? "1" : undefined);
    status.textContent = busy ? "computing…" : "";
  };

  const drawError = () => {
    error.textContent = model.get("error") ?? "";
  };

  const handlers: [string, () => void][] = [
    ["change:payload", drawBody],
    ["change:busy", drawBusy],
    ["change:error", drawError],
    ["change:strength", syncSlider],
    ["change:strength_range", syncSlider],
  ];
  for (const [e, f] of handlers) model.on(e, f);
  syncSlider();
  drawBody();
  drawBusy();
  drawError();

  return () => {
    writeStrength.cancel();
    for (const [e, f] of handlers) model.off(e, f);
    slider.removeEventListener("input", onInput);
    slider.removeEventListener("change", onChange);
    root.remove();
  };
};

export default { render };
