/** The header above the plot: the title and the colour legend (gradient, range, "missing"). */

import type { FeatureMapState, WidgetModel } from "../contract";
import { h } from "../dom";
import { colormapName, formatNumber, gradientCss, MISSING_RGB, toHex } from "../selection";

export interface Legend {
  /** `.wb-header`: the title and the legend. */
  header: HTMLElement;
  /** Show the model's title, colour column, range and colour map; hidden without values. */
  update(hasValues: boolean): void;
  /** Show the "missing" swatch when some points are drawn grey. */
  setMissing(missing: number, hasValues: boolean): void;
}

export function createLegend(model: WidgetModel<FeatureMapState>): Legend {
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
  return {
    header,
    update(hasValues) {
      title.textContent = model.get("title") ?? "";
      const range = model.get("value_range") ?? [];
      legendTitle.textContent = model.get("color_by") ?? "";
      legendLo.textContent = formatNumber(range[0]);
      legendHi.textContent = formatNumber(range[1]);
      legendBar.style.background = gradientCss(colormapName(model.get("colormap")));
      legend.hidden = !hasValues;
    },
    setMissing(missing, hasValues) {
      legendMissing.hidden = missing === 0 || !hasValues;
    },
  };
}
