import { describe, expect, it } from "vitest";
import { TRAITS, isCardMessage, toFloat32, toInt32 } from "../contract";

describe("toFloat32", () => {
  it("views an aligned DataView without copying", () => {
    const src = new Float32Array([1.5, -2, NaN, 4]);
    const dv = new DataView(src.buffer);
    const out = toFloat32(dv, 4);
    expect(out.buffer).toBe(src.buffer);
    expect(Array.from(out)).toEqual([1.5, -2, NaN, 4]);
  });

  it("respects an aligned non-zero byteOffset (zero-copy)", () => {
    const buf = new ArrayBuffer(24);
    new Float32Array(buf).set([9, 9, 1, 2, 3, 9]);
    const out = toFloat32(new DataView(buf, 8, 12));
    expect(out.buffer).toBe(buf);
    expect(out.byteOffset).toBe(8);
    expect(Array.from(out)).toEqual([1, 2, 3]);
  });

  it("copies when the DataView's byteOffset is not 4-aligned", () => {
    const buf = new ArrayBuffer(1 + 3 * 4);
    const dv = new DataView(buf, 1, 12);
    [0.25, -7.5, 1e6].forEach((v, i) => dv.setFloat32(4 * i, v, true));
    const out = toFloat32(dv, 3);
    expect(out.buffer).not.toBe(buf);
    expect(Array.from(out)).toEqual([0.25, -7.5, 1e6]);
  });

  it("accepts an ArrayBuffer and typed arrays of other kinds", () => {
    const src = new Float32Array([3, 4]);
    expect(Array.from(toFloat32(src.buffer))).toEqual([3, 4]);
    expect(toFloat32(src)).toBe(src);
    expect(Array.from(toFloat32(new Uint8Array(src.buffer)))).toEqual([3, 4]);
  });

  it("treats null/undefined as zero bytes", () => {
    expect(toFloat32(null).length).toBe(0);
    expect(toFloat32(undefined, 0).length).toBe(0);
    expect(() => toFloat32(null, 2)).toThrow(/expected 2 values/);
  });

  it("throws a clear error on a wrong byte length", () => {
    expect(() => toFloat32(new DataView(new ArrayBuffer(10)))).toThrow(/not a multiple of 4/);
    expect(() => toFloat32(new Float32Array(3).buffer, 4)).toThrow(/expected 4 values \(16 bytes\), got 3 \(12 bytes\)/);
  });
});

describe("toInt32", () => {
  it("decodes aligned and unaligned little-endian int32", () => {
    const src = new Int32Array([1, -2, 2147483647]);
    expect(Array.from(toInt32(new DataView(src.buffer), 3))).toEqual([1, -2, 2147483647]);
    const buf = new ArrayBuffer(3 + 8);
    const dv = new DataView(buf, 3, 8);
    dv.setInt32(0, -5, true);
    dv.setInt32(4, 70000, true);
    expect(Array.from(toInt32(dv))).toEqual([-5, 70000]);
    expect(() => toInt32(dv, 3)).toThrow(/expected 3 values/);
    expect(() => toInt32(new ArrayBuffer(7))).toThrow(/not a multiple of 4/);
  });
});

describe("contract names", () => {
  it("lists the traits of CONTRACT.md", () => {
    expect(TRAITS.feature_map).toContain("value_range");
    expect(TRAITS.neighborhood).toEqual(["center", "nodes", "edges", "selection", "height", "title"]);
    expect(TRAITS.patch_preview).toEqual(["payload", "strength", "strength_range", "busy", "error"]);
  });

  it("recognises card messages", () => {
    expect(isCardMessage({ type: "card", index: 3, label: "x", value: null, contexts: [] })).toBe(true);
    expect(isCardMessage({ type: "hover", index: 3 })).toBe(false);
    expect(isCardMessage({ type: "card", index: "3" })).toBe(false);
    expect(isCardMessage(null)).toBe(false);
  });
});
