/** Buffers -> scatter rows (feature_map/points.ts), without a plot. */
import { describe, expect, it } from "vitest";
import type { FeatureMapState } from "../contract";
import { BINS, PointTable, readPoints } from "../feature_map/points";
import { FakeModel } from "./fake_model";

const bytes = (a: number[]) => new DataView(new Float32Array(a).buffer);

function model(over: Partial<FeatureMapState> = {}) {
  return new FakeModel<FeatureMapState>({
    n: 3,
    points: bytes([-0.5, -0.5, 0, 0, 0.5, 0.5]),
    values: bytes([0, NaN, 10]),
    color_by: "v",
    value_range: [0, 10],
    colormap: "viridis",
    selection: [],
    highlight: [],
    point_size: 3,
    height: 420,
    title: "",
    ...over,
  });
}

describe("readPoints", () => {
  it("counts interleaved x, y pairs and reports a mismatch with n", () => {
    expect(readPoints(bytes([1, 2, 3, 4]), 2)).toMatchObject({ count: 2, problem: "" });
    expect(readPoints(bytes([1, 2, 3]), 1).problem).toBe("points has an odd number of floats (3)");
    expect(readPoints(bytes([1, 2, 3, 4]), 5).problem).toBe("n = 5 but points holds 2 points");
    expect(() => readPoints(new DataView(new ArrayBuffer(6)), 1)).toThrow(/not a multiple of 4/);
  });
});

describe("PointTable", () => {
  it("encodes rows [x, y, colour bin, highlight] and counts missing values", () => {
    const t = new PointTable();
    const frame = t.read(model({ highlight: [2, 7, -1] }), true);
    expect(frame.rows).toEqual([
      [-0.5, -0.5, 0, 0],
      [0, 0, BINS, 0],
      [0.5, 0.5, BINS - 1, 1],
    ]);
    expect(frame).toMatchObject({ rebuilt: true, missing: 1, problems: [] });
    expect(t.count).toBe(3);
    expect(Array.from(t.values)).toEqual([0, NaN, 10]);
  });

  it("keeps its rows when only colours change, and re-creates them for new positions", () => {
    const t = new PointTable();
    const m = model();
    const first = t.read(m, true);
    m.set("values", bytes([10, 5, 0]));
    const second = t.read(m, false);
    expect(second.rows).toBe(first.rows);
    expect(second.rebuilt).toBe(false);
    expect(second.rows.map((r) => r[2])).toEqual([255, 128, 0]);
    expect(t.read(m, true).rows).not.toBe(first.rows);
  });

  it("draws values of the wrong length as missing, saying so", () => {
    const t = new PointTable();
    const frame = t.read(model({ values: bytes([1]) }), true);
    expect(frame.missing).toBe(3);
    expect(frame.problems).toEqual(["values holds 1 entries for 3 points (drawn as missing)"]);
    expect(t.values.length).toBe(0);
  });
});
