/**
 * FeatureMap widget (`workbench.widgets.FeatureMap`): a WebGL scatter plot of features
 * (regl-scatterplot) coloured by a value column, with click / lasso selection synced to
 * Python, highlighted points, a colour legend and a hover card.
 *
 * `render` builds the DOM and wires the parts, one concept each, in `feature_map/`:
 * `scatter` (the shared WebGL renderer, theme and point encoding), `points` (buffers ->
 * scatter rows), `draw` (the coalescing draw loop), `legend` (title and colour legend),
 * `select` (selection both ways), `pan_guard` (undoes the camera's spurious pan on a press) and
 * `card` (the hover card and its messages).
 */

import type { FeatureMapState, Render, WidgetModel } from "./contract";
import { DEFAULTS } from "./contract";
import { createRoot, ensureStyle, h, setFlag } from "./dom";
import { HoverCard } from "./feature_map/card";
import { DrawLoop } from "./feature_map/draw";
import { createLegend } from "./feature_map/legend";
import { PointTable } from "./feature_map/points";
import {
  acquireRenderer,
  createScatterplot,
  initialSettings,
  readTheme,
  releaseRenderer,
  type Renderer,
  type Scatterplot,
  sizes,
  themeSettings,
} from "./feature_map/scatter";
import { PanGuard } from "./feature_map/pan_guard";
import { SelectionSync } from "./feature_map/select";
import { CSS } from "./feature_map/style";

const HINT = "click: select · shift+drag or long press: lasso · shift: add · double-click / Esc: clear · scroll: zoom";

const render: Render<FeatureMapState> = ({ model, el }) => {
  const t0 = performance.now();
  ensureStyle(el, "wb-style-feature-map", CSS);
  const root = createRoot(el, "feature-map");
  const flag = (key: string, value: string | undefined) => setFlag(root, el, key, value);
  flag("rendered", undefined);

  const table = new PointTable();
  const legend = createLegend(model);
  const card = new HoverCard(model, () => table.values);
  const canvas = h("canvas", { class: "wb-canvas" });
  const plot = h("div", { class: "wb-plot" }, canvas, card.el);
  const notice = h("div", { class: "wb-error", role: "alert" });
  root.append(legend.header, plot, h("div", { class: "wb-hint" }, HINT), notice);

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
  try {
    sp = createScatterplot(
      initialSettings({
        renderer,
        canvas,
        height: height(),
        theme,
        pointSize: Number(model.get("point_size")),
        hasHighlight,
        colormap: model.get("colormap"),
      }),
    );
  } catch (err) {
    releaseRenderer();
    notice.textContent = `The feature map could not start WebGL: ${String(err)}`;
    flag("error", "webgl");
    return () => root.remove();
  }
  if (!sp.isSupported) {
    notice.textContent = "This browser lacks WebGL features the feature map needs; it may draw incorrectly.";
  }

  let destroyed = false;
  const drawLegend = () => legend.update(table.values.length > 0);
  const applyTheme = () => {
    if (!destroyed) void sp.set(themeSettings(theme, model.get("colormap")));
  };
  const markRendered = () => {
    if (destroyed || root.dataset.rendered === "1") return;
    flag("rendered", "1");
    flag("firstDrawMs", (performance.now() - t0).toFixed(1));
  };

  const selection = new SelectionSync(model, table, flag);
  const loop = new DrawLoop(sp, {
    read: (positions) => {
      const frame = table.read(model, positions);
      legend.setMissing(frame.missing, table.values.length > 0);
      return frame;
    },
    beforeDraw: drawLegend,
    selection: () => selection.current(),
    afterDraw: (frame) => {
      notice.textContent = frame.problems.join("; ");
      flag("points", String(frame.rows.length));
    },
    firstDraw: () => {
      sp.subscribe("draw", markRendered, 1);
      sp.redraw();
      theme = readTheme(el); // el is attached by now: pick up the real theme colours
      applyTheme();
    },
    notice: (text) => {
      notice.textContent = text;
    },
  });

  // ---- Python -> JS
  const onHighlight = () => {
    hasHighlight = (model.get("highlight") ?? []).length > 0;
    void sp.set(sizes(Number(model.get("point_size")), hasHighlight));
    loop.request(false);
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
  const onValues = () => loop.request(false);
  const onPoints = () => loop.request(true);

  const handlers: [string, () => void][] = [
    ["change:points", onPoints],
    ["change:n", onPoints],
    ["change:values", onValues],
    ["change:value_range", onValues],
    ["change:colormap", onColormap],
    ["change:color_by", drawLegend],
    ["change:title", drawLegend],
    ["change:selection", selection.onModelChange],
    ["change:highlight", onHighlight],
    ["change:point_size", onPointSize],
    ["change:height", onHeight],
  ];
  for (const [e, f] of handlers) model.on(e, f);

  // ---- JS -> Python: selection, hover
  const panGuard = new PanGuard((n) => flag("pansUndone", String(n)));
  const subs: unknown[] = [
    ...panGuard.attach(sp, canvas),
    ...selection.attach(sp, canvas),
    ...card.attach(sp, plot),
  ];

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
  loop.request(true);

  return () => {
    destroyed = true;
    loop.dispose();
    card.dispose();
    selection.dispose();
    panGuard.dispose();
    themeObserver?.disconnect();
    for (const [e, f] of handlers) model.off(e, f);
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
