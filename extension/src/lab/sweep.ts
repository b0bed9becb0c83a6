// Sweeps in the Workbench panel (pure logic, no DOM): unit-tested with vitest.
//  * a parameter's "values" field (sweep mode) -> its list of typed values, or an error naming
//    the field and the value: comma-separated for int / float / bool / str (a double-quoted
//    item may hold commas: `"a, b", c`), a JSON list for list / dict / any parameters; each
//    value within the parameter's declared choices and range;
//  * all the fields -> the grid (parameters given two or more values), the fixed parameters
//    (one value, differing from the default), the number of runs, and the request body of
//    POST /workbench/sweeps.
import { type FieldDescriptor, allowedText, outsideAllowed } from "./model";

export type ParsedValues = { ok: true; values: unknown[] } | { ok: false; error: string };

/** One comma-separated item: its text, and whether it was written in double quotes. */
interface Item {
  text: string;
  quoted: boolean;
}

type Split = { ok: true; items: Item[] } | { ok: false; error: string };

/** `1, 2,3` -> ["1", "2", "3"]; `"a, b", c` -> ["a, b", "c"] (a quoted item is a JSON string,
 *  so `\"` escapes a quote). Empty items (`1,,2`, a trailing comma) are errors. */
export function splitValues(name: string, text: string): Split {
  const items: Item[] = [];
  let i = 0;
  const n = text.length;
  const skipSpace = () => {
    while (i < n && /\s/.test(text[i]!)) i++;
  };
  for (;;) {
    skipSpace();
    const index = items.length;
    if (text[i] === '"') {
      let j = i + 1;
      while (j < n && text[j] !== '"') j += text[j] === "\\" ? 2 : 1;
      if (j >= n) return { ok: false, error: `${name}[${index}]: the quote opened here is not closed` };
      let value: string;
      try {
        value = JSON.parse(text.slice(i, j + 1)) as string;
      } catch {
        return { ok: false, error: `${name}[${index}]: ${text.slice(i, j + 1)} is not a valid quoted string` };
      }
      items.push({ text: value, quoted: true });
      i = j + 1;
      skipSpace();
      if (i < n && text[i] !== ",")
        return { ok: false, error: `${name}[${index}]: put a comma after the quoted value ${text.slice(0, i)}` };
    } else {
      let j = i;
      while (j < n && text[j] !== ",") j++;
      const item = text.slice(i, j).trim();
      if (item === "") {
        return {
          ok: false,
          error: `${name}[${index}]: empty value (remove the extra comma${items.length === 0 ? "" : ", or quote an empty string: \"\""})`,
        };
      }
      items.push({ text: item, quoted: false });
      i = j;
    }
    if (i >= n) return { ok: true, items };
    i++; // the comma
  }
}

const INT = /^[+-]?\d+$/;
const TRUE = new Set(["true", "yes", "on", "1"]);
const FALSE = new Set(["false", "no", "off", "0"]);

function typeOk(type: string, v: unknown): boolean {
  if (type === "list") return Array.isArray(v);
  if (type === "dict") return v !== null && typeof v === "object" && !Array.isArray(v);
  return true;
}

const JSON_EXAMPLE: Record<string, string> = { list: "[[1, 2], [3]]", dict: '[{"a": 1}, {"a": 2}]' };

/** A values field (sweep mode) -> the parameter's values, each checked against its type. */
export function parseValues(field: FieldDescriptor, text: string): ParsedValues {
  const name = field.name;
  const bad = (error: string): ParsedValues => ({ ok: false, error });
  if (text.trim() === "") return bad(`${name}: give at least one value`);
  let values: unknown[] = [];
  if (field.kind === "json") {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (e) {
      const example = JSON_EXAMPLE[field.type] ?? "[1, \"a\", null]";
      return bad(`${name}: expected a JSON list of values, e.g. ${example} (${(e as Error).message})`);
    }
    if (!Array.isArray(parsed) || parsed.length === 0) {
      const example = JSON_EXAMPLE[field.type] ?? "[1, \"a\", null]";
      return bad(`${name}: expected a non-empty JSON list of values, e.g. ${example}`);
    }
    for (const [i, v] of parsed.entries()) {
      if (!typeOk(field.type, v)) return bad(`${name}[${i}]: expected ${field.type}, got ${JSON.stringify(v)}`);
    }
    values = parsed;
  } else {
    const split = splitValues(name, text);
    if (!split.ok) return split;
    for (const [i, { text: t, quoted }] of split.items.entries()) {
      const got = `got ${JSON.stringify(t)}`;
      if (field.kind === "text") values.push(t);
      else if (quoted) return bad(`${name}[${i}]: expected ${field.type}, ${got} (quotes are for strings)`);
      else if (field.kind === "checkbox") {
        const low = t.toLowerCase();
        if (!TRUE.has(low) && !FALSE.has(low)) return bad(`${name}[${i}]: expected true or false, ${got}`);
        values.push(TRUE.has(low));
      } else if (field.type === "int") {
        if (!INT.test(t)) return bad(`${name}[${i}]: expected int, ${got}`);
        values.push(Number(t));
      } else {
        const x = Number(t);
        if (!Number.isFinite(x)) return bad(`${name}[${i}]: expected ${field.type}, ${got}`);
        values.push(x);
      }
    }
  }
  for (const [i, v] of values.entries()) {
    const why = outsideAllowed(field, v);
    if (why !== null) return bad(`${name}[${i}]: ${why}`);
  }
  const seen = new Map<string, number>();
  for (const [i, v] of values.entries()) {
    const key = JSON.stringify(v);
    const first = seen.get(key);
    if (first !== undefined) return bad(`${name}[${i}]: ${key} is listed twice (also at ${first})`);
    seen.set(key, i);
  }
  return { ok: true, values };
}

/** The values-field text a parameter starts with in sweep mode: its current single value. */
export function valuesText(field: FieldDescriptor, raw: string | boolean): string {
  if (field.kind === "checkbox") return raw === true || raw === "true" ? "true" : "false";
  const text = String(raw);
  if (field.kind === "json") return `[${text.trim() === "" ? "null" : text.trim()}]`;
  if (field.kind === "text" && (text === "" || /[,"]/.test(text) || text.trim() !== text)) {
    return JSON.stringify(text);
  }
  return text;
}

/** How to write a parameter's values (a placeholder / hint for its field), with what its
 *  notebook allows: `comma-separated integers, e.g. 1, 2, 3; >= 1`. */
export function valuesHint(field: FieldDescriptor): string {
  const allowed = allowedText(field);
  return allowed ? `${formatHint(field)}; ${allowed}` : formatHint(field);
}

function formatHint(field: FieldDescriptor): string {
  switch (field.kind) {
    case "number":
      return field.type === "int" ? "comma-separated integers, e.g. 1, 2, 3" : "comma-separated numbers, e.g. 0.1, 0.5";
    case "checkbox":
      return "true, false";
    case "text":
      return 'comma-separated; quote a value with commas: "a, b", c';
    default:
      return `a JSON list of values, e.g. ${JSON_EXAMPLE[field.type] ?? '[1, "a", null]'}`;
  }
}

export interface SweepForm {
  ok: boolean;
  /** parameters given two or more values: the grid swept */
  grid: Record<string, unknown[]>;
  /** parameters given one value that differs from the notebook's default */
  parameters: Record<string, unknown>;
  /** the number of runs: the product of the grid's list lengths */
  size: number;
  errors: string[];
}

/** The number of points of a grid (1 for an empty grid). */
export function gridSize(grid: Record<string, readonly unknown[]>): number {
  return Object.values(grid).reduce((n, values) => n * values.length, 1);
}

/** Every values field (by name; a field left out keeps its initial value) -> the sweep. */
export function collectSweep(
  fields: readonly FieldDescriptor[],
  texts: Record<string, string | undefined>,
): SweepForm {
  const grid: Record<string, unknown[]> = {};
  const parameters: Record<string, unknown> = {};
  const errors: string[] = [];
  for (const f of fields) {
    const parsed = parseValues(f, texts[f.name] ?? valuesText(f, f.initial));
    if (!parsed.ok) errors.push(parsed.error);
    else if (parsed.values.length > 1) grid[f.name] = parsed.values;
    else if (JSON.stringify(parsed.values[0]) !== JSON.stringify(f.default)) parameters[f.name] = parsed.values[0];
  }
  if (errors.length === 0 && Object.keys(grid).length === 0) {
    errors.push("to sweep, give at least one parameter two or more values (comma-separated)");
  }
  return { ok: errors.length === 0, grid, parameters, size: gridSize(grid), errors };
}

/** `6 runs`, `1 run`, or the first error. */
export function sweepSummary(form: SweepForm): string {
  if (!form.ok) return form.errors[0] ?? "invalid";
  const shape = Object.entries(form.grid)
    .map(([k, v]) => `${k}: ${v.length}`)
    .join(" × ");
  return `${form.size} run${form.size === 1 ? "" : "s"} (${shape})`;
}

export interface SweepRequest {
  notebook: string;
  grid: Record<string, unknown[]>;
  parameters: Record<string, unknown>;
}

/** The body of POST /workbench/sweeps. */
export function sweepRequest(notebook: string, form: SweepForm): SweepRequest {
  return { notebook, grid: form.grid, parameters: form.parameters };
}
