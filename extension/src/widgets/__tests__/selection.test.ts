import { describe, expect, it } from "vitest";
import {
  clickSelection,
  colormap,
  colormapTable,
  colourBins,
  dataToScreen,
  edgeWidth,
  formatDelta,
  formatNumber,
  gradientCss,
  lassoSelection,
  nearestPoint,
  nodeRadius,
  normalise,
  parseCssColor,
  radialLayout,
  sameSelection,
  screenToData,
  sortedUnique,
  toHex,
  tokenDiff,
  unionSelection,
} from "../selection";

/** Deterministic PRNG (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe("normalise", () => {
  it("maps [lo, hi] to [0, 1], clamps, keeps NaN", () => {
    const out = normalise([0, 5, 10, -3, 13, NaN, Infinity, -Infinity], [0, 10]);
    expect(Array.from(out.slice(0, 5))).toEqual([0, 0.5, 1, 0, 1]);
    expect(Number.isNaN(out[5])).toBe(true);
    expect(out[6]).toBe(1);
    expect(out[7]).toBe(0);
    expect(out).toBeInstanceOf(Float32Array);
  });

  it("maps everything but NaN to 0.5 for a degenerate range", () => {
    for (const range of [[2, 2], [3, 1], [NaN, 1], [0, Infinity], []]) {
      const out = normalise([1, NaN, 7], range);
      expect(out[0]).toBe(0.5);
      expect(Number.isNaN(out[1])).toBe(true);
      expect(out[2]).toBe(0.5);
    }
  });

  it("gives colour-table bins with NaN in the extra bin", () => {
    expect(Array.from(colourBins([0, 1, 0.5, NaN, 2], [0, 1], 256))).toEqual([0, 255, 128, 256, 255]);
  });
});

describe("colormap", () => {
  it("hits the published endpoints", () => {
    expect(colormap("viridis", 0)).toEqual([68, 1, 84]);
    expect(colormap("viridis", 1)).toEqual([253, 231, 37]);
    expect(colormap("coolwarm", 0)).toEqual([59, 76, 192]);
    expect(colormap("coolwarm", 0.5)).toEqual([221, 221, 221]);
    expect(colormap("coolwarm", 1)).toEqual([180, 4, 38]);
  });

  it("clamps, greys NaN, and falls back to viridis for unknown names", () => {
    expect(colormap("viridis", -1)).toEqual(colormap("viridis", 0));
    expect(colormap("viridis", 7)).toEqual(colormap("viridis", 1));
    expect(colormap("viridis", NaN)).toEqual([158, 158, 158]);
    expect(colormap("magma?", 0.3)).toEqual(colormap("viridis", 0.3));
  });

  it("builds 256-entry tables of integer RGB", () => {
    const t = colormapTable("coolwarm");
    expect(t).toHaveLength(256);
    expect(t[0]).toEqual([59, 76, 192]);
    expect(t[255]).toEqual([180, 4, 38]);
    for (const c of t) for (const v of c) expect(Number.isInteger(v) && v >= 0 && v <= 255).toBe(true);
    expect(toHex([68, 1, 84])).toBe("#440154");
    expect(gradientCss("viridis", 3)).toBe(
      `linear-gradient(to right, #440154 0.0%, ${toHex(colormap("viridis", 0.5))} 50.0%, #fde725 100.0%)`,
    );
  });

  it("parses computed CSS colours", () => {
    expect(parseCssColor("#fff")).toEqual([1, 1, 1, 1]);
    expect(parseCssColor(" #1976D2 ")?.map((v) => Math.round(v * 255))).toEqual([25, 118, 210, 255]);
    expect(parseCssColor("rgba(255, 0, 0, 0.5)")).toEqual([1, 0, 0, 0.5]);
    expect(parseCssColor("rgb(0 255 0 / 25%)")).toEqual([0, 1, 0, 0.25]);
    expect(parseCssColor("white")).toBeNull();
    expect(parseCssColor("")).toBeNull();
  });
});

describe("selection operations", () => {
  it("click on a point selects just it; click on empty space clears", () => {
    expect(clickSelection([1, 2], 7)).toEqual([7]);
    expect(clickSelection([1, 2], -1)).toEqual([]);
    expect(clickSelection([1, 2], null)).toEqual([]);
  });

  it("shift-click adds to the selection; shift-click on empty space keeps it", () => {
    expect(clickSelection([5, 1], 3, { shift: true })).toEqual([1, 3, 5]);
    expect(clickSelection([5, 1], 5, { shift: true })).toEqual([1, 5]);
    expect(clickSelection([5, 1], -1, { shift: true })).toEqual([1, 5]);
  });

  it("lasso results are sorted and deduplicated; shift unions with the existing selection", () => {
    expect(lassoSelection([9], [4, 2, 4, 8, 2])).toEqual([2, 4, 8]);
    expect(lassoSelection([9, 1], [4, 2, 4], { shift: true })).toEqual([1, 2, 4, 9]);
    expect(lassoSelection([3], [])).toEqual([]);
    expect(sortedUnique([3, -1, 2.5, 3, 0])).toEqual([0, 3]);
    expect(unionSelection([3, 1], new Set([2, 3]))).toEqual([1, 2, 3]);
    expect(sameSelection([3, 1, 2], [1, 2, 3])).toBe(true);
    expect(sameSelection([1, 2], [1, 2, 3])).toBe(false);
  });
});

describe("nearestPoint", () => {
  it("matches a brute-force expectation on random points", () => {
    const r = rng(42);
    const n = 2000;
    const pts = new Float32Array(2 * n);
    for (let i = 0; i < 2 * n; i++) pts[i] = r() * 2 - 1;
    for (let q = 0; q < 200; q++) {
      const x = r() * 2.4 - 1.2;
      const y = r() * 2.4 - 1.2;
      let best = -1;
      let bestD = Infinity;
      for (let i = 0; i < n; i++) {
        const d = Math.hypot((pts[2 * i] as number) - x, (pts[2 * i + 1] as number) - y);
        if (d < bestD) {
          bestD = d;
          best = i;
        }
      }
      expect(nearestPoint(pts, x, y)).toBe(best);
      expect(nearestPoint(pts, x, y, bestD * 0.999)).toBe(-1);
      expect(nearestPoint(pts, x, y, bestD * 1.001)).toBe(best);
    }
  });

  it("returns -1 without points, skips NaN, breaks ties by lower index", () => {
    expect(nearestPoint(new Float32Array(0), 0, 0)).toBe(-1);
    expect(nearestPoint([NaN, NaN, 1, 1], 0, 0)).toBe(1);
    expect(nearestPoint([1, 0, -1, 0, 1, 0], 0, 0)).toBe(0);
  });
});

describe("screen <-> data", () => {
  it("round-trips through a zoomed, panned camera view", () => {
    // column-major 4x4: scale 2, translate (0.3, -0.2)
    const view = [2, 0, 0, 0, 0, 2, 0, 0, 0, 0, 1, 0, 0.3, -0.2, 0, 1];
    for (const [x, y] of [
      [0, 0],
      [0.5, -0.25],
      [-1, 1],
    ] as const) {
      const [px, py] = dataToScreen(x, y, view, 600, 400);
      const [bx, by] = screenToData(px, py, view, 600, 400);
      expect(bx).toBeCloseTo(x, 6);
      expect(by).toBeCloseTo(y, 6);
    }
    const identity = [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1];
    // The identity view puts the origin in the middle and y = 1 at the top edge.
    expect(dataToScreen(0, 0, identity, 600, 400)).toEqual([300, 200]);
    expect(dataToScreen(0, 1, identity, 600, 400)[1]).toBeCloseTo(0);
  });
});

describe("radialLayout", () => {
  const nodes = [
    { id: 10, cosine: null },
    { id: 3, cosine: 0.2 },
    { id: 4, cosine: -0.9 },
    { id: 5, cosine: 0.5 },
    { id: 6, cosine: -0.5 },
    { id: 7, cosine: null },
  ];

  it("orders by |cosine| descending from 12 o'clock, clockwise", () => {
    const l = radialLayout(nodes, 10, 400, 300);
    // ties (|0.5|) by id; null cosine last
    expect(l.order).toEqual([4, 5, 6, 3, 7]);
    const first = l.positions.get(4)!;
    expect(first.x).toBeCloseTo(l.cx);
    expect(first.y).toBeCloseTo(l.cy - l.radius); // 12 o'clock (SVG y grows down)
    const second = l.positions.get(5)!;
    expect(second.x).toBeGreaterThan(l.cx); // clockwise: next one to the right
    const angles = l.order.map((id) => l.positions.get(id)!.angle);
    for (let k = 1; k < angles.length; k++) expect(angles[k]!).toBeGreaterThan(angles[k - 1]!);
    expect(angles[1]! - angles[0]!).toBeCloseTo((2 * Math.PI) / 5);
  });

  it("puts the centre in the middle and every neighbour on the circle", () => {
    const l = radialLayout(nodes, 10, 400, 300);
    expect(l.positions.get(10)).toEqual({ x: 200, y: 150, angle: 0 });
    for (const id of l.order) {
      const p = l.positions.get(id)!;
      expect(Math.hypot(p.x - l.cx, p.y - l.cy)).toBeCloseTo(l.radius, 9);
    }
    expect(l.radius).toBe(150 - 28);
  });

  it("is deterministic and independent of input order", () => {
    const a = radialLayout(nodes, 10, 400, 300);
    const b = radialLayout([...nodes].reverse(), 10, 400, 300);
    expect(b.order).toEqual(a.order);
    expect([...b.positions.entries()].sort()).toEqual([...a.positions.entries()].sort());
    expect(radialLayout(nodes, 10, 400, 300)).toEqual(a);
  });

  it("works without the centre among the nodes", () => {
    const l = radialLayout([{ id: 1, cosine: 0.3 }], 99, 100, 100);
    expect(l.positions.has(99)).toBe(false);
    expect(l.order).toEqual([1]);
  });

  it("sizes nodes by coactivation and edges by |cosine|", () => {
    expect(nodeRadius(null, 10)).toBe(5);
    expect(nodeRadius(0, 10)).toBe(7);
    expect(nodeRadius(10, 10)).toBe(18);
    expect(nodeRadius(2.5, 10)).toBeCloseTo(7 + 11 * 0.5);
    expect(edgeWidth(-1)).toBe(edgeWidth(1));
    expect(edgeWidth(0.2)).toBeLessThan(edgeWidth(0.8));
  });
});

describe("tokenDiff and formatting", () => {
  it("uses the payload's flags and compares positions elsewhere", () => {
    expect(tokenDiff(["a", "b", "c"], ["a", "x", "c"], [false, true, false])).toEqual({
      before: [false, true, false],
      after: [false, true, false],
    });
    expect(tokenDiff(["a", "b"], ["a", "x", "y"])).toEqual({ before: [false, true], after: [false, true, true] });
  });

  it("formats numbers and deltas", () => {
    expect(formatNumber(0.123456)).toBe("0.123");
    expect(formatNumber(null)).toBe("—");
    expect(formatNumber(NaN)).toBe("—");
    expect(formatDelta(0.5, 0.25)).toBe("−0.25");
    expect(formatDelta(0.25, 0.5)).toBe("+0.25");
    expect(formatDelta(1, 1)).toBe("±0");
    expect(formatDelta(null, 1)).toBe("");
  });
});
