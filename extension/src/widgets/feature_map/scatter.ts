/**
 * regl-scatterplot as the feature map uses it: one WebGL renderer shared by every map on the
 * page, the theme read from JupyterLab's CSS variables, and the settings that encode colour
 * and highlight.
 *
 * Encoding: valueA (z) carries the colour-table index (0..BINS-1 from `values` through
 * `value_range`, BINS = missing -> grey), valueB (w) is 1 for highlighted points (larger,
 * opaque) and 0 otherwise. Both are categorical, so the colours are exact table lookups.
 */

import createScatterplot, { createRenderer } from "regl-scatterplot";
import { DEFAULTS } from "../contract";
import { type RGBA, colormapTable, MISSING_RGB, parseCssColor } from "../selection";
import { BINS } from "./points";

export type Scatterplot = ReturnType<typeof createScatterplot>;
export type Renderer = ReturnType<typeof createRenderer>;
type ScatterSettings = NonNullable<Parameters<typeof createScatterplot>[0]>;

/**
 * regl-scatterplot's typings allow one colour for `pointColorActive`/`pointColorHover`, but
 * the library takes one per category (it needs them to colour selected/hovered points when
 * `colorBy` is set), so settings pass through this cast.
 */
export function settings(s: Record<string, unknown>): ScatterSettings {
  return s as unknown as ScatterSettings;
}

// ---------------------------------------------------------------------------------------------
// One WebGL renderer shared by every feature map on the page (browsers cap WebGL contexts).

let sharedRenderer: Renderer | null = null;
let rendererUsers = 0;

export function acquireRenderer(): Renderer {
  if (!sharedRenderer || sharedRenderer.isDestroyed) sharedRenderer = createRenderer();
  rendererUsers += 1;
  return sharedRenderer;
}

export function releaseRenderer(): void {
  rendererUsers = Math.max(0, rendererUsers - 1);
  if (rendererUsers === 0 && sharedRenderer) {
    if (!sharedRenderer.isDestroyed) sharedRenderer.destroy();
    sharedRenderer = null;
  }
}

// ---------------------------------------------------------------------------------------------
// Theme and point appearance

export interface Theme {
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

export function readTheme(el: HTMLElement): Theme {
  return {
    background: parseCssColor(cssVar(el, "--jp-layout-color1")) ?? [1, 1, 1, 1],
    active: parseCssColor(cssVar(el, "--jp-brand-color1")) ?? [0.098, 0.463, 0.824, 1],
    hover: parseCssColor(cssVar(el, "--jp-ui-font-color1")) ?? [0.13, 0.13, 0.13, 1],
  };
}

/** One colour per category: the colour map's BINS entries, then translucent grey (missing). */
export function pointColours(colormap: string, theme: Theme) {
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

/** Sizes and opacities by valueB: [normal, highlighted]; others fade while a highlight shows. */
export function sizes(pointSize: number, hasHighlight: boolean): { pointSize: number[]; opacity: number[] } {
  const s = Number.isFinite(pointSize) && pointSize > 0 ? pointSize : DEFAULTS.feature_map.point_size;
  return {
    pointSize: [s, Math.max(2 * s, s + 3)],
    opacity: [hasHighlight ? 0.55 : 1, 1],
  };
}

/** The settings a new plot starts with. */
export function initialSettings(o: {
  renderer: Renderer;
  canvas: HTMLCanvasElement;
  height: number;
  theme: Theme;
  pointSize: number;
  hasHighlight: boolean;
  colormap: string;
}): ScatterSettings {
  return settings({
    renderer: o.renderer,
    canvas: o.canvas,
    width: "auto",
    height: o.height,
    backgroundColor: o.theme.background,
    colorBy: "valueA",
    sizeBy: "valueB",
    opacityBy: "valueB",
    pointSizeSelected: 2,
    pointOutlineWidth: 2,
    lassoOnLongPress: true,
    lassoColor: o.theme.active,
    deselectOnDblClick: true,
    deselectOnEscape: true,
    ...sizes(o.pointSize, o.hasHighlight),
    ...pointColours(o.colormap, o.theme),
    // Shift+drag lassoes and shift merges (lasso and click add to the selection); alt removes.
    actionKeyMap: { lasso: "shift", merge: "shift", remove: "alt" },
  });
}

/** The settings that follow the theme and colour map (after a switch of either). */
export function themeSettings(theme: Theme, colormap: string): ScatterSettings {
  return settings({
    backgroundColor: theme.background,
    lassoColor: theme.active,
    ...pointColours(colormap, theme),
  });
}

export { createScatterplot };
