/**
 * FeatureMap widget (`workbench.widgets.FeatureMap`): a WebGL scatter plot of features
 * (regl-scatterplot) coloured by a value column, with click / lasso selection synced to
 * Python, highlighted points, a colour legend and a hover card.
 *
 * Encoding: valueA (z) carries the colour-table index (0..255 from `values` through
 * `value_range`, 256 = missing -> grey), valueB (w) is 1 for highlighted points (larger,
 * opaque) and 0 otherwise. Both are categorical, so the colours are exact table lookups.
 */

import createScatterplot, { createRenderer } from "regl-scatterplot";
import type { BinaryLike, FeatureMapState, Render, WidgetModel } from "./contract";
import { DEBOUNCE_MS, DEFAULTS, isCardMessage, toFloat32, type CardMessage } from "./contract";
import { BASE_CSS, createRoot, debounce, ensureStyle, h, setFlag } from "./dom";
import {
  type RGBA,
  colourBins,
  colormapName,
  colormapTable,
  formatNumber,
  gradientCss,
  MISSING_RGB,
  nearestPoint,
  parseCssColor,
  sameSelection,
  screenToData,
  sortedUnique,
  toHex,
} from "./selection";

type Scatterplot = ReturnType<typeof createScatterplot>;
type Renderer = ReturnType<typeof createRenderer>;
type ScatterSettings = NonNullable<Parameters<typeof createScatterplot>[0]>;

/**
 * regl-scatterplot's typings allow one colour for `pointColorActive`/`pointColorHover`, but
 * the library takes one per category (it needs them to colour selected/hovered points when
 * `colorBy` is set), so settings pass through this cast.
 */
function settings(s: Record<string, unknown>): ScatterSettings {
  return s as unknown as ScatterSettings;
}

const BINS = 256;
const MAX_CONTEXTS = 5;

const CSS = `${BASE_CSS}
.wb-feature-map { padding: 6px; }
.wb-feature-map .wb-header { display: flex; align-items: flex-end; justify-content: space-between; gap: 12px; flex-wrap: wrap; }
.wb-feature-map .wb-plot {
  position: relative;
  box-sizing: content-box;
  width: 100%;
  overflow: hidden;
  border: 1px solid var(--jp-border-color2, #ddd);
  border-radius: 3px;
  background: var(--jp-layout-color1, #fff);
}
.wb-feature-map canvas.wb-canvas { display: block; width: 100%; }
.wb-feature-map .wb-legend { display: flex; align-items: center; gap: 6px; font-size: 11px; margin-bottom: 6px; }
.wb-feature-map .wb-legend[hidden] { display: none; }
.wb-feature-map .wb-legend-title { font-weight: 600; }
.wb-feature-map .wb-legend-bar { width: 140px; height: 10px; border-radius: 2px; border: 1px solid var(--jp-border-color2, #ddd); }
.wb-feature-map .wb-legend-missing { display: inline-flex; align-items: center; gap: 3px; color: var(--jp-ui-font-color2, #666); }
.wb-feature-map .wb-legend-missing[hidden] { display: none; }
.wb-feature-map .wb-swatch { width: 10px; height: 10px; border-radius: 50%; display: inline-block; }
.wb-feature-map .wb-card {
  position: absolute;
  z-index: 2;
  pointer-events: none;
  max-width: 320px;
  padding: 6px 8px;
  border-radius: 4px;
  border: 1px solid var(--jp-border-color1, #bbb);
  background: var(--jp-layout-color0, #fff);
  color: var(--jp-ui-font-color1, #222);
  box-shadow: var(--jp-elevation-z4, 0 2px 6px rgba(0, 0, 0, 0.2));
  font-size: 12px;
}
.wb-feature-map .wb-card[hidden] { display: none; }
.wb-feature-map .wb-card-head { display: flex; gap: 6px; align-items: baseline; }
.wb-feature-map .wb-card-index { font-weight: 700; }
.wb-feature-map .wb-card-label:empty { display: none; }
.wb-feature-map .wb-card-value { color: var(--jp-ui-font-color2, #666); font-family: var(--jp-code-font-family, monospace); }
.wb-feature-map .wb-card-contexts { margin: 4px 0 0 0; padding-left: 18px; font-family: var(--jp-code-font-family, monospace); font-size: 11px; }
.wb-feature-map .wb-card-contexts:empty { display: none; }
.wb-feature-map .wb-card-contexts li { white-space: pre-wrap; word-break: break-word; margin: 1px 0; }
.wb-feature-map .wb-hint { font-size: 11px; color: var(--jp-ui-font-color3, #999); margin-top: 3px; }
`;

// ---------------------------------------------------------------------------------------------
// One WebGL renderer shared by every feature map on the page (browsers cap WebGL contexts).

let sharedRenderer: Renderer | null = null;
let rendererUsers = 0;

function acquireRenderer(): Renderer {
  if (!sharedRenderer || sharedRenderer.isDestroyed) sharedRenderer = createRenderer();
  rendererUsers += 1;
  return sharedRenderer;
}

function releaseRenderer(): void {
  rendererUsers = Math.max(0, rendererUsers - 1);
  if (rendererUsers === 0 && sharedRenderer) {
    if (!sharedRenderer.isDestroyed) sharedRenderer.destroy();
    sharedRenderer = null;
  }
}

// ---------------------------------------------------------------------------------------------

interface Theme {
  background: RGBA;
  active: RGBA;
  hover: RGBA;
}

function cssVar(el: HTMLElement, name: string): string {
  try {
    return getComputedStyle(el).getPropertyValue(name);
  } catch {
    return "";
  }
}

function readTheme(el: HTMLElement): Theme {
  return {
    background: parseCssColor(cssVar(el, "--jp-layout-color1")) ?? [1, 1, 1, 1],
    active: parseCssColor(cssVar(el, "--jp-brand-color1")) ?? [0.098, 0.463, 0.824, 1],
    hover: parseCssColor(cssVar(el, "--jp-ui-font-color1")) ?? [0.13, 0.13, 0.13, 1],
  };
}

function pointColours(colormap: string, theme: Theme) {
  const table = colormapTable(colormap, BINS);
  const normal: RGBA[] = table.map(([r, g, b]) => [r / 255, g / 255, b / 255, 1]);
  normal.push([MISSING_RGB[0] / 255, MISSING_RGB[1] / 255, MISSING_RGB[2] / 255, 0.55]);
  const opaque = (c: RGBA): RGBA => [c[0], c[1], c[2], 1];
  return {
    pointColor: normal,
    pointColorActive: normal.map(() => opaque(theme.active)),
    pointColorHover: normal.map(() => opaque(theme.hover)),
  };
}

function sizes(pointSize: number, hasHighlight: boolean): { pointSize: number[]; opacity: number[] } {
  const s = Number.isFinite(pointSize) && pointSize > 0 ? pointSize : DEFAULTS.feature_map.point_size;
  return {
    pointSize: [s, Math.max(2 * s, s + 3)],
    opacity: [hasHighlight ? 0.55 : 1, 1],
  };
}

function readPoints(raw: BinaryLike, n: number): { xy: Float32Array; count: number; problem: string } {
  const xy = toFloat32(raw);
  const count = Math.floor(xy.length / 2);
  let problem = "";
  if (xy.length % 2 !== 0) problem = `points has an odd number of floats (${xy.length})`;
  else if (Number.isInteger(n) && n !== count) problem = `n = ${n} but points holds ${count} points`;
  return { xy, count, problem };
}

const render: Render<FeatureMapState> = ({ model, el }) => {
  const t0 = performance.now();
  ensureStyle(el, "wb-style-feature-map", CSS);
  const root = createRoot(el, "feature-map");
  const flag = (key: string, value: string | undefined) => setFlag(root, el, key, value);
  flag("rendered", undefined);

  const title = h("div", { class: "wb-title" });
  const legendTitle = h("span", { class: "wb-legend-title" });
  const legendLo = h("span", { class: "wb-legend-lo" });
  const legendBar = h("div", { class: "wb-legend-bar" });
  const legendHi = h("span", { class: "wb-legend-hi" });
  const legendMissing = h(
    "span",
    { class: "wb-legend-missing", hidden: true },
    h("i", { class: "wb-swatch", style: `background: ${toHex(MISSING_RGB)}` }),
    "missing",
  );
  const legend = h("div", { class: "wb-legend" }, legendTitle, legendLo, legendBar, legendHi, legendMissing);
  const header = h("div", { class: "wb-header" }, title, legend);
  const canvas = h("canvas", { class: "wb-canvas" });
  const cardIndex = h("span", { class: "wb-card-index" });
  const cardLabel = h("span", { class: "wb-card-label" });
  const cardValue = h("div", { class: "wb-card-value" });
  const cardContexts = h("ol", { class: "wb-card-contexts" });
  const card = h(
    "div",
    { class: "wb-card", hidden: true, role: "tooltip" },
    h("div", { class: "wb-card-head" }, cardIndex, cardLabel),
    cardValue,
    cardContexts,
  );
  const plot = h("div", { class: "wb-plot" }, canvas, card);
  const notice = h("div", { class: "wb-error", role: "alert" });
  const hint = h(
    "div",
    { class: "wb-hint" },
    "click: select · shift+drag or long press: lasso · shift: add · double-click / Esc: clear · scroll: zoom",
  );
  root.append(header, plot, hint, notice);

  const height = () => Number(model.get("height")) || DEFAULTS.feature_map.height;
  plot.style.height = `${height()}px`;

  let renderer: Renderer;
  let sp: Scatterplot;
  try {
    renderer = acquireRenderer();
  } catch (err) {
    notice.textContent = `WebGL is not available here, so the feature map cannot draw (${String(err)}).`;
    flag("error", "webgl");
    return () => root.remove();
  }

  let theme = readTheme(el);
  let hasHighlight = (model.get("highlight") ?? []).length > 0;
  const initial = settings({
    renderer,
    canvas,
    width: "auto",
    height: height(),
    backgroundColor: theme.background,
    colorBy: "valueA",
    sizeBy: "valueB",
    opacityBy: "valueB",
    pointSizeSelected: 2,
    pointOutlineWidth: 2,
    lassoOnLongPress: true,
    lassoColor: theme.active,
    deselectOnDblClick: true,
    deselectOnEscape: true,
    ...sizes(Number(model.get("point_size")), hasHighlight),
    ...pointColours(model.get("colormap"), theme),
    // Shift+drag lassoes and shift merges (lasso and click add to the selection); alt removes.
    actionKeyMap: { lasso: "shift", merge: "shift", remove: "alt" },
  });
  try {
    sp = createScatterplot(initial);
  } catch (err) {
    releaseRenderer();
    notice.textContent = `The feature map could not start WebGL: ${String(err)}`;
    flag("error", "webgl");
    return () => root.remove();
  }
  if (!sp.isSupported) {
    notice.textContent = "This browser lacks WebGL features the feature map needs; it may draw incorrectly.";
  }

  // ---- state
  let destroyed = false;
  let xy: Float32Array = new Float32Array(0);
  let count = 0;
  let values: Float32Array = new Float32Array(0);
  let spatialIndex: ArrayBuffer | undefined;
  let positionsChanged = true;
  let pendingDraw = false;
  let drawing = false;
  let firstDrawDone = false;
  let hovered = -1;
  const cards = new Map<number, CardMessage>();

  const currentSelection = () => sortedUnique(model.get("selection") ?? []);

  // ---- legend & title
  const drawLegend = () => {
    title.textContent = model.get("title") ?? "";
    const range = model.get("value_range") ?? [];
    legendTitle.textContent = model.get("color_by") ?? "";
    legendLo.textContent = formatNumber(range[0]);
    legendHi.textContent = formatNumber(range[1]);
    legendBar.style.background = gradientCss(colormapName(model.get("colormap")));
    legend.hidden = values.length === 0;
  };

  // ---- data -> draw
  // Row-oriented points [x, y, colour bin, highlight], kept between draws: regl-scatterplot
  // takes rows as they are (columns it would convert into a million new arrays per draw), so
  // a colour or highlight change only rewrites the last two entries of each row.
  let rows: number[][] = [];

  const readData = (positions: boolean) => {
    const pts = readPoints(model.get("points"), Number(model.get("n")));
    xy = pts.xy;
    count = pts.count;
    const problems: string[] = pts.problem ? [pts.problem] : [];
    let vals = toFloat32(model.get("values"));
    if (vals.length !== 0 && vals.length !== count) {
      problems.push(`values holds ${vals.length} entries for ${count} points (drawn as missing)`);
      vals = new Float32Array(0);
    }
    values = vals;
    const bins = values.length === count ? colourBins(values, model.get("value_range") ?? [], BINS) : null;
    const highlight = new Uint8Array(count);
    for (const i of model.get("highlight") ?? []) if (Number.isInteger(i) && i >= 0 && i < count) highlight[i] = 1;
    const rebuilt = positions || rows.length !== count;
    if (rebuilt) {
      rows = new Array<number[]>(count);
      for (let i = 0; i < count; i++) rows[i] = [xy[2 * i] as number, xy[2 * i + 1] as number, 0, 0];
    }
    let missing = 0;
    for (let i = 0; i < count; i++) {
      const row = rows[i] as number[];
      const b = bins ? (bins[i] as number) : BINS;
      if (b === BINS) missing++;
      row[2] = b;
      row[3] = highlight[i] as number;
    }
    legendMissing.hidden = missing === 0 || values.length === 0;
    return { rows, problems, rebuilt };
  };

  const markRendered = () => {
    if (destroyed || root.dataset.rendered === "1") return;
    flag("rendered", "1");
    flag("firstDrawMs", (performance.now() - t0).toFixed(1));
  };

  const pump = async () => {
    if (drawing || destroyed) return;
    drawing = true;
    try {
      while (pendingDraw && !destroyed) {
        pendingDraw = false;
        const positions = positionsChanged;
        positionsChanged = false;
        let data: ReturnType<typeof readData>;
        try {
          data = readData(positions);
        } catch (err) {
          if (positions) positionsChanged = true; // still owed once the data is readable
          notice.textContent = `Cannot draw: ${err instanceof Error ? err.message : String(err)}`;
          continue;
        }
        if (data.rebuilt) spatialIndex = undefined; // the old index no longer matches
        const reuseIndex = spatialIndex;
        drawLegend();
        const selection = currentSelection().filter((i) => i < data.rows.length);
        await sp.draw(
          data.rows,
          {
            zDataType: "categorical",
            wDataType: "categorical",
            ...(reuseIndex ? { spatialIndex: reuseIndex } : {}),
            select: selection,
          },
        );
        if (destroyed) return;
        spatialIndex = sp.get("spatialIndex");
        notice.textContent = data.problems.join("; ");
        flag("points", String(data.rows.length));
        if (!firstDrawDone) {
          firstDrawDone = true;
          sp.subscribe("draw", markRendered, 1);
          sp.redraw();
          theme = readTheme(el); // el is attached by now: pick up the real theme colours
          applyTheme();
        }
      }
    } catch (err) {
      if (!destroyed) notice.textContent = `Drawing failed: ${err instanceof Error ? err.message : String(err)}`;
    } finally {
      drawing = false;
    }
    // A request that arrived while an error unwound the loop.
    if (pendingDraw && !destroyed) void pump();
  };

  const requestDraw = (positions: boolean) => {
    pendingDraw = true;
    if (positions) positionsChanged = true;
    void pump();
  };

  const applyTheme = () => {
    if (destroyed) return;
    void sp.set(
      settings({
        backgroundColor: theme.background,
        lassoColor: theme.active,
        ...pointColours(model.get("colormap"), theme),
      }),
    );
  };

  // ---- Python -> JS
  /** `data-selection` (JSON, up to 1000 indices) and `data-selection-count` for browser tests. */
  const showSelection = (sel: readonly number[]) => {
    flag("selectionCount", String(sel.length));
    flag("selection", sel.length <= 1000 ? JSON.stringify(sel) : undefined);
  };
  showSelection(currentSelection());

  const onSelection = () => {
    showSelection(currentSelection());
    if (destroyed || !sp.get("isPointsDrawn")) return; // a pending draw applies it
    const sel = currentSelection().filter((i) => i < count);
    if (sameSelection(sel, sortedUnique(sp.get("selectedPoints") ?? []))) return;
    if (sel.length === 0) sp.deselect({ preventEvent: true });
    else sp.select(sel, { preventEvent: true });
  };
  const onHighlight = () => {
    hasHighlight = (model.get("highlight") ?? []).length > 0;
    void sp.set(sizes(Number(model.get("point_size")), hasHighlight));
    requestDraw(false);
  };
  const onPointSize = () => void sp.set(sizes(Number(model.get("point_size")), hasHighlight));
  const onColormap = () => {
    drawLegend();
    applyTheme();
  };
  const onHeight = () => {
    plot.style.height = `${height()}px`;
    void sp.set({ height: height() });
  };
  const onValues = () => requestDraw(false);
  const onPoints = () => requestDraw(true);

  const handlers: [string, () => void][] = [
    ["change:points", onPoints],
    ["change:n", onPoints],
    ["change:values", onValues],
    ["change:value_range", onValues],
    ["change:colormap", onColormap],
    ["change:color_by", drawLegend],
    ["change:title", drawLegend],
    ["change:selection", onSelection],
    ["change:highlight", onHighlight],
    ["change:point_size", onPointSize],
    ["change:height", onHeight],
  ];
  for (const [e, f] of handlers) model.on(e, f);

  // ---- JS -> Python: selection
  const writeSelection = (sel: number[]) => {
    if (destroyed) return;
    showSelection(sel);
    if (sameSelection(sel, model.get("selection") ?? [])) return;
    model.set("selection", sel);
    model.save_changes();
  };
  const subs: unknown[] = [
    sp.subscribe("select", ({ points }) => writeSelection(sortedUnique(points))),
    sp.subscribe("deselect", () => writeSelection([])),
  ];

  // Click on empty space clears the selection (regl-scatterplot only does so on double-click).
  // A click counts as "on a point" when regl-scatterplot's hover raycast found one; without a
  // preceding mouse move, a brute-force search in data space decides.
  let downX = NaN;
  let downY = NaN;
  const onMouseDown = (ev: MouseEvent) => {
    downX = ev.clientX;
    downY = ev.clientY;
  };
  const onClick = (ev: MouseEvent) => {
    if (destroyed || !sp.get("isPointsDrawn")) return;
    if (Math.hypot(ev.clientX - downX, ev.clientY - downY) >= 4) return; // a drag / lasso
    if (ev.shiftKey || ev.altKey || ev.metaKey || ev.ctrlKey) return;
    const hov = sp.get("hoveredPoint");
    if (typeof hov === "number" && hov >= 0) return; // regl-scatterplot selected it
    const rect = canvas.getBoundingClientRect();
    if (!(rect.width > 0 && rect.height > 0)) return;
    const px = ev.clientX - rect.left;
    const py = ev.clientY - rect.top;
    const view = sp.get("cameraView");
    const [dx, dy] = screenToData(px, py, view, rect.width, rect.height);
    const radiusPx = Math.max(6, Number(model.get("point_size")) + 4);
    const [ex, ey] = screenToData(px + radiusPx, py, view, rect.width, rect.height);
    const hit = nearestPoint(xy, dx, dy, Math.hypot(ex - dx, ey - dy));
    if (hit >= 0) sp.select([hit]);
    else if ((sp.get("selectedPoints") ?? []).length > 0) sp.deselect();
    else writeSelection([]);
  };
  canvas.addEventListener("mousedown", onMouseDown);
  canvas.addEventListener("click", onClick);

  // ---- hover card
  const fillCard = (i: number) => {
    const c = cards.get(i);
    cardIndex.textContent = `#${i}`;
    cardLabel.textContent = c?.label ?? "";
    const v = c && typeof c.value === "number" ? c.value : values.length > i ? (values[i] as number) : null;
    const name = model.get("color_by") ?? "";
    cardValue.textContent = v === null ? "" : `${name ? `${name}: ` : ""}${formatNumber(v)}`;
    cardContexts.replaceChildren(
      ...(c?.contexts ?? []).slice(0, MAX_CONTEXTS).map((t) => h("li", {}, String(t))),
    );
  };
  const placeCard = (i: number) => {
    let pos: [number, number] | undefined;
    try {
      pos = sp.getScreenPosition(i);
    } catch {
      pos = undefined;
    }
    if (!pos) return;
    const w = plot.clientWidth;
    const hgt = plot.clientHeight;
    const cw = card.offsetWidth;
    const ch = card.offsetHeight;
    let left = pos[0] + 12;
    let top = pos[1] + 12;
    if (left + cw > w) left = Math.max(0, pos[0] - 12 - cw);
    if (top + ch > hgt) top = Math.max(0, pos[1] - 12 - ch);
    card.style.left = `${left}px`;
    card.style.top = `${top}px`;
  };
  const showCard = (i: number) => {
    fillCard(i);
    card.hidden = false;
    placeCard(i);
  };
  const sendHover = debounce((i: number) => {
    if (!destroyed && i === hovered) model.send({ type: "hover", index: i });
  }, DEBOUNCE_MS.hover);
  subs.push(
    sp.subscribe("pointOver", (i) => {
      hovered = i;
      showCard(i);
      sendHover(i);
    }),
    sp.subscribe("pointOut", () => {
      hovered = -1;
      sendHover.cancel();
      card.hidden = true;
    }),
    sp.subscribe("view", () => {
      if (hovered >= 0 && !card.hidden) placeCard(hovered);
    }),
  );
  const onMessage = (msg: unknown) => {
    if (!isCardMessage(msg)) return;
    cards.set(msg.index, msg);
    if (cards.size > 512) cards.delete(cards.keys().next().value as number);
    if (msg.index === hovered && !card.hidden) showCard(msg.index);
  };
  model.on("msg:custom", onMessage);

  // ---- theme switches (JupyterLab sets data attributes on <body>)
  let themeObserver: MutationObserver | null = null;
  if (typeof MutationObserver !== "undefined" && document.body) {
    themeObserver = new MutationObserver(() => {
      theme = readTheme(el);
      applyTheme();
    });
    themeObserver.observe(document.body, { attributes: true, attributeFilter: ["data-jp-theme-name", "data-jp-theme-light"] });
  }

  drawLegend();
  requestDraw(true);

  return () => {
    destroyed = true;
    sendHover.cancel();
    themeObserver?.disconnect();
    for (const [e, f] of handlers) model.off(e, f);
    model.off("msg:custom", onMessage);
    canvas.removeEventListener("mousedown", onMouseDown);
    canvas.removeEventListener("click", onClick);
    const unsubscribe = sp.unsubscribe as (sub: unknown) => void;
    for (const sub of subs) unsubscribe(sub);
    sp.destroy();
    releaseRenderer();
    root.remove();
  };
};

/** For tests and type checks: the model type this widget reads. */
export type FeatureMapModel = WidgetModel<FeatureMapState>;

export default { render };
