/**
 * Buffers -> scatter points: decode the `points`, `values` and `highlight` traits (layouts in
 * contract.json) into the rows regl-scatterplot draws, `[x, y, colour bin, highlight]`.
 *
 * The rows are kept between draws: regl-scatterplot takes rows as they are (columns it would
 * convert into a million new arrays per draw), so a colour or highlight change only rewrites
 * the last two entries of each row.
 */

import { BUFFERS, type BinaryLike, type FeatureMapState, type WidgetModel, toFloat32 } from "../contract";
import { colourBins } from "../selection";

/** Colour-table size; bin BINS is the "missing" colour. */
export const BINS = 256;

/** Floats per point in `points` (shape [n, 2], row-major). */
const STRIDE = BUFFERS.feature_map.points.shape[1];

export function readPoints(raw: BinaryLike, n: number): { xy: Float32Array; count: number; problem: string } {
  const xy = toFloat32(raw);
  const count = Math.floor(xy.length / STRIDE);
  let problem = "";
  if (xy.length % STRIDE !== 0) problem = `points has an odd number of floats (${xy.length})`;
  else if (Number.isInteger(n) && n !== count) problem = `n = ${n} but points holds ${count} points`;
  return { xy, count, problem };
}

export interface Frame {
  rows: number[][];
  /** Inconsistencies drawn around (shown as a notice). */
  problems: string[];
  /** The rows were re-created (new positions): an old spatial index no longer matches. */
  rebuilt: boolean;
  /** Points drawn in the missing colour. */
  missing: number;
}

/** The decoded data of one map: what the last successful {@link PointTable.read} saw. */
export class PointTable {
  xy: Float32Array = new Float32Array(0);
  count = 0;
  values: Float32Array = new Float32Array(0);
  private rows: number[][] = [];

  /**
   * Decode the model's buffers into rows; `positions` re-creates them (the points moved).
   * Throws when a buffer cannot be decoded (byte length not a multiple of 4).
   */
  read(model: WidgetModel<FeatureMapState>, positions: boolean): Frame {
    const pts = readPoints(model.get("points"), Number(model.get("n")));
    this.xy = pts.xy;
    this.count = pts.count;
    const count = pts.count;
    const problems: string[] = pts.problem ? [pts.problem] : [];
    let vals = toFloat32(model.get("values"));
    if (vals.length !== 0 && vals.length !== count) {
      problems.push(`values holds ${vals.length} entries for ${count} points (drawn as missing)`);
      vals = new Float32Array(0);
    }
    this.values = vals;
    const bins = vals.length === count ? colourBins(vals, model.get("value_range") ?? [], BINS) : null;
    const highlight = new Uint8Array(count);
    for (const i of model.get("highlight") ?? []) if (Number.isInteger(i) && i >= 0 && i < count) highlight[i] = 1;
    const rebuilt = positions || this.rows.length !== count;
    if (rebuilt) {
      const xy = pts.xy;
      this.rows = new Array<number[]>(count);
      for (let i = 0; i < count; i++) this.rows[i] = [xy[STRIDE * i] as number, xy[STRIDE * i + 1] as number, 0, 0];
    }
    let missing = 0;
    for (let i = 0; i < count; i++) {
      const row = this.rows[i] as number[];
      const b = bins ? (bins[i] as number) : BINS;
      if (b === BINS) missing++;
      row[2] = b;
      row[3] = highlight[i] as number;
    }
    return { rows: this.rows, problems, rebuilt, missing };
  }
}
