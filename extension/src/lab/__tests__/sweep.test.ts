import { describe, expect, it } from "vitest";

import { fieldFor, fieldsFor } from "../model";
import {
  collectSweep,
  gridSize,
  parseValues,
  splitValues,
  sweepRequest,
  sweepSummary,
  valuesHint,
  valuesText,
} from "../sweep";

const int = fieldFor({ name: "seed", type: "int", default: 0 });
const float = fieldFor({ name: "lr", type: "float", default: 0.5 });
const bool = fieldFor({ name: "flag", type: "bool", default: false });
const str = fieldFor({ name: "label", type: "str", default: "abc" });
const list = fieldFor({ name: "layers", type: "list", default: [1] });
const dict = fieldFor({ name: "cfg", type: "dict", default: { a: 1 } });
const any = fieldFor({ name: "anything", type: "any", default: null });

describe("splitting a values field", () => {
  it("splits on commas and trims", () => {
    expect(splitValues("x", " 1, 2,3 ")).toEqual({
      ok: true,
      items: [
        { text: "1", quoted: false },
        { text: "2", quoted: false },
        { text: "3", quoted: false },
      ],
    });
  });
  it("keeps commas and escaped quotes inside double quotes", () => {
    const out = splitValues("label", '"a, b", c , "say \\"hi\\"", ""');
    expect(out.ok && out.items.map((i) => i.text)).toEqual(["a, b", "c", 'say "hi"', ""]);
  });
  it("refuses empty items and unclosed quotes, naming the position", () => {
    expect(splitValues("x", "1,,2")).toEqual({ ok: false, error: expect.stringContaining("x[1]: empty value") });
    expect(splitValues("x", "1, 2,")).toEqual({ ok: false, error: expect.stringContaining("x[2]: empty value") });
    expect(splitValues("label", 'a, "b')).toEqual({ ok: false, error: "label[1]: the quote opened here is not closed" });
    expect(splitValues("label", '"a" b')).toEqual({
      ok: false,
      error: expect.stringContaining("label[0]: put a comma after the quoted value"),
    });
  });
});

describe("parsing values per type", () => {
  it("parses integers and refuses non-integers naming the field and index", () => {
    expect(parseValues(int, "1, 2, 3")).toEqual({ ok: true, values: [1, 2, 3] });
    expect(parseValues(int, "-4,+5")).toEqual({ ok: true, values: [-4, 5] });
    expect(parseValues(int, "1, 1.5")).toEqual({ ok: false, error: 'seed[1]: expected int, got "1.5"' });
    expect(parseValues(int, "1, x")).toEqual({ ok: false, error: 'seed[1]: expected int, got "x"' });
    expect(parseValues(int, '"1"')).toEqual({
      ok: false,
      error: 'seed[0]: expected int, got "1" (quotes are for strings)',
    });
  });
  it("parses floats", () => {
    expect(parseValues(float, "0.1, 1e-3, 2")).toEqual({ ok: true, values: [0.1, 0.001, 2] });
    expect(parseValues(float, "0.1, fast")).toEqual({ ok: false, error: 'lr[1]: expected float, got "fast"' });
  });
  it("parses booleans", () => {
    expect(parseValues(bool, "true,false")).toEqual({ ok: true, values: [true, false] });
    expect(parseValues(bool, "True, no")).toEqual({ ok: true, values: [true, false] });
    expect(parseValues(bool, "true, maybe")).toEqual({ ok: false, error: 'flag[1]: expected true or false, got "maybe"' });
  });
  it("parses strings, quoted ones holding commas", () => {
    expect(parseValues(str, 'small, "big, slow", x')).toEqual({ ok: true, values: ["small", "big, slow", "x"] });
  });
  it("parses a JSON list of values for list, dict and any parameters", () => {
    expect(parseValues(list, "[[1, 2], [3]]")).toEqual({ ok: true, values: [[1, 2], [3]] });
    expect(parseValues(list, "[[1], 2]")).toEqual({ ok: false, error: "layers[1]: expected list, got 2" });
    expect(parseValues(dict, '[{"a": 1}, {"a": 2}]')).toEqual({ ok: true, values: [{ a: 1 }, { a: 2 }] });
    expect(parseValues(dict, '[{"a": 1}, [1]]')).toEqual({ ok: false, error: "cfg[1]: expected dict, got [1]" });
    expect(parseValues(any, '[null, 1, "a"]')).toEqual({ ok: true, values: [null, 1, "a"] });
    const notList = parseValues(list, "[1, 2");
    expect(notList.ok).toBe(false);
    expect(!notList.ok && notList.error).toMatch(/^layers: expected a JSON list of values, e.g. \[\[1, 2\], \[3\]\]/);
    expect(parseValues(any, "3")).toEqual({
      ok: false,
      error: 'anything: expected a non-empty JSON list of values, e.g. [1, "a", null]',
    });
  });
  it("refuses empty fields and duplicates", () => {
    expect(parseValues(int, "  ")).toEqual({ ok: false, error: "seed: give at least one value" });
    expect(parseValues(int, "1, 2, 1")).toEqual({ ok: false, error: "seed[2]: 1 is listed twice (also at 0)" });
  });
});

describe("values text and hints", () => {
  it("starts a values field from the single value", () => {
    expect(valuesText(int, "3")).toBe("3");
    expect(valuesText(bool, true)).toBe("true");
    expect(valuesText(str, "a, b")).toBe('"a, b"');
    expect(valuesText(str, "plain")).toBe("plain");
    expect(valuesText(list, "[1,2]")).toBe("[[1,2]]");
    // each round-trips to the one value
    expect(parseValues(str, valuesText(str, "a, b"))).toEqual({ ok: true, values: ["a, b"] });
    expect(parseValues(list, valuesText(list, "[1,2]"))).toEqual({ ok: true, values: [[1, 2]] });
  });
  it("says how to write values", () => {
    expect(valuesHint(int)).toBe("comma-separated integers, e.g. 1, 2, 3");
    expect(valuesHint(bool)).toBe("true, false");
    expect(valuesHint(dict)).toBe('a JSON list of values, e.g. [{"a": 1}, {"a": 2}]');
  });
});

describe("the grid", () => {
  const fields = fieldsFor([
    { name: "x", type: "int", default: 1 },
    { name: "lr", type: "float", default: 0.5 },
    { name: "flag", type: "bool", default: false },
    { name: "label", type: "str", default: "abc" },
  ]);

  it("is the product of the multi-valued fields; single values are fixed parameters", () => {
    const form = collectSweep(fields, { x: "1, 2, 3", flag: "true, false", label: "other" });
    expect(form).toEqual({
      ok: true,
      grid: { x: [1, 2, 3], flag: [true, false] },
      parameters: { label: "other" }, // lr is left at its default: not sent
      size: 6,
      errors: [],
    });
    expect(sweepSummary(form)).toBe("6 runs (x: 3 × flag: 2)");
    expect(sweepRequest("toy", form)).toEqual({
      notebook: "toy",
      grid: { x: [1, 2, 3], flag: [true, false] },
      parameters: { label: "other" },
    });
  });
  it("counts sizes", () => {
    expect(gridSize({})).toBe(1);
    expect(gridSize({ a: [1, 2], b: [1, 2, 3], c: [0, 1, 2, 3] })).toBe(24);
    expect(sweepSummary(collectSweep(fields, { x: "4, 5" }))).toBe("2 runs (x: 2)");
  });
  it("collects every field's error, and needs a multi-valued field", () => {
    const bad = collectSweep(fields, { x: "1, 2.5", lr: "a, 0.1" });
    expect(bad.ok).toBe(false);
    expect(bad.errors).toEqual(['x[1]: expected int, got "2.5"', 'lr[0]: expected float, got "a"']);
    expect(sweepSummary(bad)).toBe('x[1]: expected int, got "2.5"');
    const single = collectSweep(fields, { x: "7" });
    expect(single.ok).toBe(false);
    expect(single.size).toBe(1);
    expect(single.parameters).toEqual({ x: 7 });
    expect(single.errors).toEqual(["to sweep, give at least one parameter two or more values (comma-separated)"]);
  });
});
