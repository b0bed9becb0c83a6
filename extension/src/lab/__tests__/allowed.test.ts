// Declared choices and ranges (a notebook's `[choices: ...]` / `[range: ...]` clauses, as
// GET /workbench/analyses lists them) in the panel's form: drop-down options, the allowed
// values in the server's words, and values outside them refused before anything is sent.
import { describe, expect, it } from "vitest";

import { allowedText, coerceValue, collectParameters, fieldFor, fieldsFor, outsideAllowed, showValue } from "../model";
import { collectSweep, parseValues, valuesHint } from "../sweep";

const unconstrained = { choices: null, minimum: null, maximum: null, exclusive_minimum: false, exclusive_maximum: false };
// the listing of the server test's `tune` notebook
const specs = [
  { name: "organism", type: "str", default: "full", help: "the organism", ...unconstrained, choices: ["full", "small"] },
  { name: "steps", type: "int", default: 600, help: "fine-tune optimiser steps", ...unconstrained, minimum: 1 },
  { name: "frac", type: "float", default: 0.1, help: "fraction screened", ...unconstrained, minimum: 0, maximum: 1 },
  { name: "eps", type: "float", default: 0.5, help: "step size", ...unconstrained, minimum: 0, exclusive_minimum: true },
  { name: "width", type: "int", default: 2, help: "", ...unconstrained, choices: [2, 4, 8] },
];
const [organism, steps, frac, eps, width] = fieldsFor(specs).map((f) => f);

describe("fields of declared choices and ranges", () => {
  it("turns choices into options and ranges into bounds", () => {
    expect(organism!.choices).toEqual([
      { value: "full", text: "full", label: "full" },
      { value: "small", text: "small", label: "small" },
    ]);
    expect(organism!.initial).toBe("full");
    expect(width!.choices?.map((c) => [c.text, c.label])).toEqual([
      ["2", "2"],
      ["4", "4"],
      ["8", "8"],
    ]);
    expect(width!.initial).toBe("2"); // an option's text
    expect(steps!.bounds).toEqual({ minimum: 1, maximum: null, exclusiveMinimum: false, exclusiveMaximum: false });
    expect(eps!.bounds).toEqual({ minimum: 0, maximum: null, exclusiveMinimum: true, exclusiveMaximum: false });
    expect([steps!.choices, organism!.bounds]).toEqual([null, null]);
    // a listing without the keys (an older server): no constraint
    expect(fieldFor({ name: "x", type: "int", default: 1 })).toMatchObject({ choices: null, bounds: null });
  });

  it("says what is allowed as the server does", () => {
    expect([organism, steps, frac, eps, width].map((f) => allowedText(f!))).toEqual([
      "one of 'full', 'small'",
      ">= 1",
      ">= 0 and <= 1",
      "> 0",
      "one of 2, 4, 8",
    ]);
    expect(allowedText(fieldFor({ name: "x", type: "int", default: 1 }))).toBe("");
    expect([showValue("it's"), showValue(0, "float"), showValue(0.5, "float"), showValue(true), showValue(null)]).toEqual([
      `"it's"`,
      "0.0",
      "0.5",
      "True",
      "None",
    ]);
  });
});

describe("values outside the declaration", () => {
  it("refuses them with the server's message", () => {
    expect(coerceValue(steps!, "-5")).toEqual({ ok: false, error: "steps: must be >= 1, got -5" });
    expect(coerceValue(organism!, "big")).toEqual({ ok: false, error: "organism: must be one of 'full', 'small', got 'big'" });
    expect(coerceValue(frac!, "1.5")).toEqual({ ok: false, error: "frac: must be >= 0 and <= 1, got 1.5" });
    expect(coerceValue(eps!, "0")).toEqual({ ok: false, error: "eps: must be > 0, got 0.0" });
    expect(coerceValue(width!, "3")).toEqual({ ok: false, error: "width: must be one of 2, 4, 8, got 3" });
    expect(outsideAllowed(steps!, 1)).toBeNull();
    expect(outsideAllowed(frac!, Number.NaN)).toBe("must be >= 0 and <= 1, got nan");
  });

  it("accepts the bounds themselves and the listed choices", () => {
    expect(coerceValue(steps!, "1")).toEqual({ ok: true, value: 1 });
    expect(coerceValue(frac!, "0")).toEqual({ ok: true, value: 0 });
    expect(coerceValue(frac!, "1")).toEqual({ ok: true, value: 1 });
    expect(coerceValue(eps!, "1e-9")).toEqual({ ok: true, value: 1e-9 });
    expect(coerceValue(organism!, "small")).toEqual({ ok: true, value: "small" });
    expect(coerceValue(width!, "8")).toEqual({ ok: true, value: 8 });
  });

  it("blocks a launch and names every refused field", () => {
    const fields = [organism!, steps!, frac!];
    const bad = collectParameters(fields, { organism: "small", steps: "-5", frac: "2" });
    expect(bad).toEqual({
      ok: false,
      parameters: { organism: "small" },
      errors: ["steps: must be >= 1, got -5", "frac: must be >= 0 and <= 1, got 2.0"], // a float, as Python shows it
    });
    expect(collectParameters(fields, { organism: "small", steps: "10", frac: "0.1" })).toEqual({
      ok: true,
      parameters: { organism: "small", steps: 10 },
      errors: [],
    });
  });

  it("checks each value of a sweep", () => {
    expect(parseValues(steps!, "10, -5")).toEqual({ ok: false, error: "steps[1]: must be >= 1, got -5" });
    expect(parseValues(organism!, "full, tiny")).toEqual({
      ok: false,
      error: "organism[1]: must be one of 'full', 'small', got 'tiny'",
    });
    expect(parseValues(organism!, "full, small")).toEqual({ ok: true, values: ["full", "small"] });
    const form = collectSweep([organism!, steps!], { organism: "full, small", steps: "0" });
    expect(form.errors).toEqual(["steps[0]: must be >= 1, got 0"]);
    expect(valuesHint(steps!)).toBe("comma-separated integers, e.g. 1, 2, 3; >= 1");
    expect(valuesHint(organism!)).toBe("comma-separated; quote a value with commas: \"a, b\", c; one of 'full', 'small'");
  });
});
