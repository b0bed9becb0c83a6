import { existsSync } from "node:fs";
import { describe, expect, it } from "vitest";
import contract from "../../../../workbench/widgets/contract.json";
import {
  BUFFERS,
  CONTRACT_VERSION,
  DEBOUNCE_MS,
  DEFAULTS,
  FIELDS,
  MESSAGES,
  TEST_IDS,
  TRAITS,
  isCardMessage,
  toFloat32,
  toInt32,
} from "../contract";

type WidgetKey = keyof typeof TRAITS;
const WIDGETS = Object.keys(TRAITS) as WidgetKey[];
const spec = (w: string) => (contract.widgets as Record<string, (typeof contract.widgets)[WidgetKey]>)[w]!;

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

describe("contract.ts equals workbench/widgets/contract.json", () => {
  it("has the same version and widgets", () => {
    expect(CONTRACT_VERSION).toBe(contract.version);
    expect(WIDGETS).toEqual(Object.keys(contract.widgets));
  });

  it("lists each widget's traits, in the JSON's order", () => {
    for (const w of WIDGETS) {
      expect({ [w]: [...TRAITS[w]] }).toEqual({ [w]: spec(w).traits.map((t) => t.name) });
    }
  });

  it("lists the records' fields", () => {
    expect(Object.keys(FIELDS)).toEqual(Object.keys(contract.records));
    for (const [name, fields] of Object.entries(contract.records)) {
      expect({ [name]: [...FIELDS[name as keyof typeof FIELDS]] }).toEqual({ [name]: Object.keys(fields) });
    }
  });

  it("decodes the binary traits with the JSON's dtype and shape", () => {
    for (const w of WIDGETS) {
      const fromJson = Object.fromEntries(
        spec(w)
          .traits.filter((t) => t.type === "Bytes")
          .map((t) => [t.name, { dtype: (t as { dtype?: string }).dtype, shape: (t as { shape?: unknown[] }).shape }]),
      );
      expect({ [w]: BUFFERS[w] }).toEqual({ [w]: fromJson });
    }
    expect(contract.binary.byte_order).toBe("little");
  });

  it("has the same custom messages and fields", () => {
    for (const w of WIDGETS) {
      const fromJson = Object.fromEntries(
        Object.entries(spec(w).messages as Record<string, Record<string, { fields: object }>>).map(([dir, msgs]) => [
          dir,
          Object.fromEntries(Object.entries(msgs).map(([type, m]) => [type, Object.keys(m.fields)])),
        ]),
      );
      expect({ [w]: MESSAGES[w] }).toEqual({ [w]: fromJson });
    }
  });

  it("uses the JSON's defaults, test ids, modules and debounce delays", () => {
    for (const [w, defaults] of Object.entries(DEFAULTS)) {
      for (const [name, value] of Object.entries(defaults)) {
        const trait = spec(w).traits.find((t) => t.name === name);
        expect({ [`${w}.${name}`]: value }).toEqual({ [`${w}.${name}`]: trait?.default });
      }
    }
    for (const w of WIDGETS) {
      expect(TEST_IDS[w]).toBe(spec(w).test_id);
      expect(spec(w).module).toBe(`${w}.js`);
      expect(existsSync(new URL(`../${w}.ts`, import.meta.url))).toBe(true);
    }
    expect(DEBOUNCE_MS).toEqual(contract.debounce_ms);
  });
});

describe("messages", () => {
  it("recognises card messages", () => {
    expect(isCardMessage({ type: "card", index: 3, label: "x", value: null, contexts: [] })).toBe(true);
    expect(isCardMessage({ type: "hover", index: 3 })).toBe(false);
    expect(isCardMessage({ type: "card", index: "3" })).toBe(false);
    expect(isCardMessage(null)).toBe(false);
  });
});
