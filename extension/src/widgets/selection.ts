/**
 * Pure logic shared by the widgets (no DOM): colour normalisation and colour maps, selection
 * set operations, nearest-point search, screen <-> data coordinates for the feature map,
 * the Neighborhood's radial layout and the PatchPreview's token diff.
 */

import type { NeighborhoodNode } from "./contract";

export type RGB = [number, number, number];
export type RGBA = [number, number, number, number];

// ---------------------------------------------------------------------------------------------
// Colour normalisation

/**
 * Map `values` linearly from `[lo, hi]` to `[0, 1]`, clamping outside the range.
 * NaN stays NaN (missing). ±Infinity clamps to 0/1. A degenerate range (`hi <= lo`, or a
 * non-finite bound) maps every non-NaN value to 0.5, the colour map's middle.
 */
export function normalise(values: ArrayLike<number>, range: readonly number[]): Float32Array {
  const lo = range[0] ?? NaN;
  const hi = range[1] ?? NaN;
  const n = values.length;
  const out = new Float32Array(n);
  const ok = Number.isFinite(lo) && Number.isFinite(hi) && hi > lo;
  const scale = ok ? 1 / (hi - lo) : 0;
  for (let i = 0; i < n; i++) {
    const v = values[i] as number;
    if (Number.isNaN(v)) {
      out[i] = NaN;
    } else if (!ok) {
      out[i] = 0.5;
    } else {
      const t = (v - lo) * scale;
      out[i] = t <= 0 ? 0 : t >= 1 ? 1 : t;
    }
  }
  return out;
}

/**
 * Colour-table index per value: `round(t * (bins - 1))` with `t` from {@link normalise},
 * and `bins` itself for NaN (the "missing" colour, appended after the map's entries).
 * Returned as float32 because that is what the scatterplot's data columns take.
 */
export function colourBins(values: ArrayLike<number>, range: readonly number[], bins = 256): Float32Array {
  const t = normalise(values, range);
  const out = new Float32Array(t.length);
  const top = bins - 1;
  for (let i = 0; i < t.length; i++) {
    const v = t[i] as number;
    out[i] = Number.isNaN(v) ? bins : Math.round(v * top);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Colour maps

/** Evenly spaced stops; lookups interpolate linearly in RGB between them. */
const STOPS: Record<string, readonly RGB[]> = {
  // matplotlib's viridis sampled at 10 even stops
  viridis: [
    [68, 1, 84],
    [72, 40, 120],
    [62, 73, 137],
    [49, 104, 142],
    [38, 130, 142],
    [31, 158, 137],
    [53, 183, 121],
    [110, 206, 88],
    [181, 222, 43],
    [253, 231, 37],
  ],
  // Moreland's smooth cool-warm (matplotlib's coolwarm) at 9 even stops
  coolwarm: [
    [59, 76, 192],
    [98, 130, 234],
    [141, 176, 254],
    [184, 208, 249],
    [221, 221, 221],
    [245, 196, 173],
    [244, 154, 123],
    [222, 96, 77],
    [180, 4, 38],
  ],
};

export const COLORMAP_NAMES = Object.keys(STOPS) as readonly string[];

/** Grey used for missing (NaN) values. */
export const MISSING_RGB: RGB = [158, 158, 158];

/** Known colour-map name, or "viridis" for anything else. */
export function colormapName(name: string | null | undefined): "viridis" | "coolwarm" {
  return name === "coolwarm" ? "coolwarm" : "viridis";
}

/** The colour at `t` in [0, 1] (clamped) of the named map as 0..255 integers; NaN gives grey. */
export function colormap(name: string | null | undefined, t: number): RGB {
  if (Number.isNaN(t)) return [...MISSING_RGB];
  const stops = STOPS[colormapName(name)] as readonly RGB[];
  const u = Math.min(1, Math.max(0, t)) * (stops.length - 1);
  const i = Math.min(stops.length - 2, Math.floor(u));
  const f = u - i;
  const a = stops[i] as RGB;
  const b = stops[i + 1] as RGB;
  return [
    Math.round(a[0] + (b[0] - a[0]) * f),
    Math.round(a[1] + (b[1] - a[1]) * f),
    Math.round(a[2] + (b[2] - a[2]) * f),
  ];
}

const TABLES = new Map<string, RGB[]>();

/** `n` colours sampled evenly over the map (cached; 256 by default). */
export function colormapTable(name: string | null | undefined, n = 256): RGB[] {
  const key = `${colormapName(name)}:${n}`;
  let table = TABLES.get(key);
  if (!table) {
    table = Array.from({ length: n }, (_, i) => colormap(name, n === 1 ? 0 : i / (n - 1)));
    TABLES.set(key, table);
  }
  return table;
}

export function toHex([r, g, b]: readonly number[]): string {
  const h = (v: number | undefined) => Math.round(v ?? 0).toString(16).padStart(2, "0");
  return `#${h(r)}${h(g)}${h(b)}`;
}

/** A CSS `linear-gradient` (left = 0, right = 1) for the legend bar. */
export function gradientCss(name: string | null | undefined, stops = 11): string {
  const parts: string[] = [];
  for (let i = 0; i < stops; i++) {
    const t = i / (stops - 1);
    parts.push(`${toHex(colormap(name, t))} ${(t * 100).toFixed(1)}%`);
  }
  return `linear-gradient(to right, ${parts.join(", ")})`;
}

/**
 * Parse a computed CSS colour (`#rgb`, `#rgba`, `#rrggbb`, `#rrggbbaa`, `rgb()`/`rgba()` with
 * commas or spaces and an optional `/ alpha`) into normalised RGBA; `null` when unparsable
 * (named colours, `color-mix()`, empty strings).
 */
export function parseCssColor(input: string | null | undefined): RGBA | null {
  const s = (input ?? "").trim().toLowerCase();
  if (!s) return null;
  const hex = /^#([0-9a-f]{3,4}|[0-9a-f]{6}|[0-9a-f]{8})$/.exec(s);
  if (hex) {
    let h = hex[1] as string;
    if (h.length <= 4) h = [...h].map((c) => c + c).join("");
    const v = (k: number) => parseInt(h.slice(2 * k, 2 * k + 2), 16);
    return [v(0) / 255, v(1) / 255, v(2) / 255, h.length === 8 ? v(3) / 255 : 1];
  }
  const fn = /^rgba?\(([^)]*)\)$/.exec(s);
  if (fn) {
    const parts = (fn[1] as string).split(/[\s,/]+/).filter(Boolean);
    if (parts.length < 3) return null;
    const chan = (p: string) => (p.endsWith("%") ? (parseFloat(p) / 100) * 255 : parseFloat(p));
    const [r, g, b] = parts.slice(0, 3).map(chan) as [number, number, number];
    let a = 1;
    if (parts[3] !== undefined) a = parts[3].endsWith("%") ? parseFloat(parts[3]) / 100 : parseFloat(parts[3]);
    if (![r, g, b, a].every(Number.isFinite)) return null;
    const c = (v: number) => Math.min(1, Math.max(0, v / 255));
    return [c(r), c(g), c(b), Math.min(1, Math.max(0, a))];
  }
  return null;
}

// ---------------------------------------------------------------------------------------------
// Selection sets (always sorted ascending, no duplicates, non-negative integers)

/** Sorted unique non-negative integers of `indices`. */
export function sortedUnique(indices: Iterable<number>): number[] {
  const out = [...new Set([...indices].filter((i) => Number.isInteger(i) && i >= 0))];
  out.sort((a, b) => a - b);
  return out;
}

export function unionSelection(a: Iterable<number>, b: Iterable<number>): number[] {
  return sortedUnique([...a, ...b]);
}

export function sameSelection(a: readonly number[], b: readonly number[]): boolean {
  if (a.length !== b.length) return false;
  const sa = sortedUnique(a);
  const sb = sortedUnique(b);
  return sa.length === sb.length && sa.every((v, i) => v === sb[i]);
}

/**
 * The selection after a click: on point `hit` -> `[hit]`; on empty space (`hit` < 0 or null)
 * -> `[]`. With shift, a hit is added to `current` and a click on empty space keeps `current`.
 */
export function clickSelection(
  current: readonly number[],
  hit: number | null | undefined,
  { shift = false }: { shift?: boolean } = {},
): number[] {
  const isHit = typeof hit === "number" && Number.isInteger(hit) && hit >= 0;
  if (shift) return isHit ? unionSelection(current, [hit]) : sortedUnique(current);
  return isHit ? [hit] : [];
}

/** The selection after a lasso: its points sorted and deduplicated; with shift, union with `current`. */
export function lassoSelection(
  current: readonly number[],
  lassoed: Iterable<number>,
  { shift = false }: { shift?: boolean } = {},
): number[] {
  return shift ? unionSelection(current, lassoed) : sortedUnique(lassoed);
}

// ---------------------------------------------------------------------------------------------
// Nearest point

/**
 * Index of the point nearest to (x, y) among interleaved `points` (x0,y0,x1,y1,...) by brute
 * force, or -1 when none lies within `maxDist` (inclusive) or there are no points. Points
 * with a NaN coordinate are skipped; ties go to the lower index.
 */
export function nearestPoint(points: ArrayLike<number>, x: number, y: number, maxDist = Infinity): number {
  let best = -1;
  let bestD2 = maxDist === Infinity ? Infinity : maxDist * maxDist;
  const n = Math.floor(points.length / 2);
  for (let i = 0; i < n; i++) {
    const dx = (points[2 * i] as number) - x;
    const dy = (points[2 * i + 1] as number) - y;
    const d2 = dx * dx + dy * dy;
    if (d2 < bestD2 || (best < 0 && d2 === bestD2)) {
      bestD2 = d2;
      best = i;
    }
  }
  return best;
}

// ---------------------------------------------------------------------------------------------
// Screen <-> data coordinates of the feature map (regl-scatterplot's camera)

/**
 * Screen position (CSS px from the canvas' top-left) of a data point (normalised device
 * coordinates), given the camera's 4x4 column-major `view` matrix, the canvas size in CSS px
 * and the data aspect ratio (1 for the contract's equal-scale points). Mirrors
 * regl-scatterplot's `getScreenPosition`.
 */
export function dataToScreen(
  x: number,
  y: number,
  view: ArrayLike<number>,
  width: number,
  height: number,
  dataAspectRatio = 1,
): [number, number] {
  const m = view;
  const xm = x * dataAspectRatio;
  const cx = ((m[0] as number) * xm + (m[4] as number) * y + (m[12] as number)) / (width / height);
  const cy = (m[1] as number) * xm + (m[5] as number) * y + (m[13] as number);
  return [(width * (cx + 1)) / 2, height * (0.5 - cy / 2)];
}

/** Inverse of {@link dataToScreen}. */
export function screenToData(
  px: number,
  py: number,
  view: ArrayLike<number>,
  width: number,
  height: number,
  dataAspectRatio = 1,
): [number, number] {
  const m = view;
  const cx = -1 + (2 * px) / width;
  const cy = 1 - (2 * py) / height;
  const u = cx * (width / height) - (m[12] as number);
  const v = cy - (m[13] as number);
  const a = m[0] as number;
  const b = m[1] as number;
  const c = m[4] as number;
  const d = m[5] as number;
  const det = a * d - b * c;
  const xm = (d * u - c * v) / det;
  const y = (-b * u + a * v) / det;
  return [xm / dataAspectRatio, y];
}

// ---------------------------------------------------------------------------------------------
// Neighborhood: radial layout

export interface LayoutPoint {
  x: number;
  y: number;
  /** radians clockwise from 12 o'clock (0 for the centre) */
  angle: number;
}

export interface RadialLayout {
  cx: number;
  cy: number;
  radius: number;
  /** neighbour ids in placement order (12 o'clock, then clockwise) */
  order: number[];
  /** every node's position, the centre's included when it is among the nodes */
  positions: Map<number, LayoutPoint>;
}

/**
 * Deterministic radial layout: the centre in the middle, every other node on one circle,
 * ordered by |cosine| descending (null cosine counts as 0; ties by id ascending), the first
 * at 12 o'clock and the rest clockwise at equal angles. Duplicate ids keep the first node.
 * `margin` keeps room for the node discs and labels.
 */
export function radialLayout(
  nodes: readonly Pick<NeighborhoodNode, "id" | "cosine">[],
  centerId: number,
  width: number,
  height: number,
  { margin = 28 }: { margin?: number } = {},
): RadialLayout {
  const cx = width / 2;
  const cy = height / 2;
  const radius = Math.max(1, Math.min(width, height) / 2 - margin);
  const seen = new Set<number>();
  const neighbours: { id: number; w: number }[] = [];
  let hasCenter = false;
  for (const node of nodes) {
    if (seen.has(node.id)) continue;
    seen.add(node.id);
    if (node.id === centerId) {
      hasCenter = true;
      continue;
    }
    const c = node.cosine;
    neighbours.push({ id: node.id, w: typeof c === "number" && Number.isFinite(c) ? Math.abs(c) : 0 });
  }
  neighbours.sort((p, q) => q.w - p.w || p.id - q.id);
  const positions = new Map<number, LayoutPoint>();
  if (hasCenter) positions.set(centerId, { x: cx, y: cy, angle: 0 });
  const m = neighbours.length;
  neighbours.forEach(({ id }, k) => {
    const angle = (2 * Math.PI * k) / m;
    positions.set(id, { x: cx + radius * Math.sin(angle), y: cy - radius * Math.cos(angle), angle });
  });
  return { cx, cy, radius, order: neighbours.map((p) => p.id), positions };
}

/**
 * Node disc radius: grows with coactivation (sqrt, relative to the largest coactivation
 * among the nodes) from `min` to `max`; null/NaN/negative coactivation gives `none`.
 */
export function nodeRadius(
  coactivation: number | null | undefined,
  maxCoactivation: number,
  { min = 7, max = 18, none = 5 }: { min?: number; max?: number; none?: number } = {},
): number {
  if (typeof coactivation !== "number" || !Number.isFinite(coactivation) || coactivation < 0) return none;
  if (!(maxCoactivation > 0)) return min;
  return min + (max - min) * Math.sqrt(Math.min(1, coactivation / maxCoactivation));
}

/** Edge stroke width proportional to |cosine| (clamped to [0, 1]). */
export function edgeWidth(cosine: number, { min = 0.5, max = 5 }: { min?: number; max?: number } = {}): number {
  const a = Number.isFinite(cosine) ? Math.min(1, Math.abs(cosine)) : 0;
  return min + (max - min) * a;
}

// ---------------------------------------------------------------------------------------------
// PatchPreview: token diff

export interface TokenDiff {
  /** per `before` token: replaced by something else at that position (or dropped) */
  before: boolean[];
  /** per `after` token: changed at that position (the `wb-changed` marks) */
  after: boolean[];
}

/**
 * Which tokens changed. `changed` (the payload's per-position flags, aligned with the
 * generated positions) wins where it covers a position; elsewhere tokens are compared
 * position by position, and a position only one side has counts as changed.
 */
export function tokenDiff(
  before: readonly string[],
  after: readonly string[],
  changed?: readonly boolean[] | null,
): TokenDiff {
  const flag = (j: number): boolean => {
    const c = changed?.[j];
    if (typeof c === "boolean") return c;
    return j >= before.length || j >= after.length || before[j] !== after[j];
  };
  return {
    before: before.map((_, j) => flag(j)),
    after: after.map((_, j) => flag(j)),
  };
}

// ---------------------------------------------------------------------------------------------
// Formatting

/** Compact number for labels: up to 3 significant decimals, "—" for null/NaN. */
export function formatNumber(v: number | null | undefined, digits = 3): string {
  if (typeof v !== "number" || Number.isNaN(v)) return "—";
  if (!Number.isFinite(v)) return v > 0 ? "∞" : "−∞";
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e5 || a < 1e-3)) return v.toExponential(2);
  return String(Number(v.toPrecision(Math.max(digits, Math.ceil(Math.log10(a + 1)) + 1))));
}

/** Signed difference for the metrics strip, e.g. "+0.12" / "−0.03" / "±0". */
export function formatDelta(before: number | null | undefined, after: number | null | undefined): string {
  if (typeof before !== "number" || typeof after !== "number" || Number.isNaN(before) || Number.isNaN(after)) {
    return "";
  }
  const d = after - before;
  if (d === 0) return "±0";
  return `${d > 0 ? "+" : "−"}${formatNumber(Math.abs(d))}`;
}
