// Pure logic of the Workbench panel (no DOM, no JupyterLab): unit-tested with vitest.
//  * parameter specs (GET /workbench/analyses) -> form field descriptors, and the inverse:
//    raw form values -> typed parameters (only those that differ from the defaults), each
//    checked against the choices and range its notebook declares, with the server's words;
//  * the run list: a reducer merging polled runs, newest first, with status labels;
//  * a deployment record (GET /workbench/runs/<id>/record) -> readable sections.

export interface ParameterSpec {
  name: string;
  type: string; // int | float | bool | str | list | dict | any
  default: unknown;
  help?: string | null;
  /** the declared `[choices: ...]`, null when any value of the type goes */
  choices?: unknown[] | null;
  /** the declared `[range: ...]` bounds, null when unbounded on that side */
  minimum?: number | null;
  maximum?: number | null;
  exclusive_minimum?: boolean;
  exclusive_maximum?: boolean;
}

export interface Analysis {
  name: string;
  path: string;
  title: string;
  parameters: ParameterSpec[];
  error?: string;
}

export type FieldKind = "number" | "checkbox" | "text" | "json";

/** One option of a parameter with declared choices (a drop-down). */
export interface Choice {
  value: unknown;
  /** the option's form text: what `coerceValue` reads back */
  text: string;
  label: string;
}

export interface Bounds {
  minimum: number | null;
  maximum: number | null;
  exclusiveMinimum: boolean;
  exclusiveMaximum: boolean;
}

export interface FieldDescriptor {
  name: string;
  type: string;
  kind: FieldKind;
  /** the input's initial value: a string for inputs, a boolean for checkboxes */
  initial: string | boolean;
  /** `step` of a number input: "1" for int, "any" for float */
  step?: string;
  help: string;
  default: unknown;
  /** declared choices: the field is a drop-down of these */
  choices: Choice[] | null;
  /** a declared range (int and float parameters) */
  bounds: Bounds | null;
}

/** A value as the panel's form text for a field of `kind`. */
export function formText(kind: FieldKind, value: unknown): string {
  if (kind === "checkbox") return value === true ? "true" : "false";
  if (kind === "number") return typeof value === "number" ? String(value) : "";
  if (kind === "text") return typeof value === "string" ? value : "";
  return value === undefined ? "" : JSON.stringify(value);
}

/** A value as the server's messages show it (Python's repr): `'full'`, `0.0` for a float. */
export function showValue(value: unknown, type?: string): string {
  if (typeof value === "string") {
    const escaped = value.replace(/\\/g, "\\\\");
    return escaped.includes("'") && !escaped.includes('"') ? `"${escaped}"` : `'${escaped.replace(/'/g, "\\'")}'`;
  }
  if (typeof value === "number") {
    if (Number.isNaN(value)) return "nan";
    return type === "float" && Number.isInteger(value) ? `${value}.0` : String(value);
  }
  if (typeof value === "boolean") return value ? "True" : "False";
  if (value === null || value === undefined) return "None";
  return JSON.stringify(value);
}

/** The declared constraint in words, as the server says it: `one of 'full', 'small'`,
 *  `>= 0 and <= 1`; "" when there is none. */
export function allowedText(field: Pick<FieldDescriptor, "type" | "choices" | "bounds">): string {
  const parts: string[] = [];
  if (field.choices) parts.push(`one of ${field.choices.map((c) => showValue(c.value, field.type)).join(", ")}`);
  const b = field.bounds;
  if (b && b.minimum !== null) parts.push(`${b.exclusiveMinimum ? ">" : ">="} ${showValue(b.minimum)}`);
  if (b && b.maximum !== null) parts.push(`${b.exclusiveMaximum ? "<" : "<="} ${showValue(b.maximum)}`);
  return parts.join(" and ");
}

/** Why a typed value is outside the field's declared choices or range (`must be >= 1, got
 *  -5`), else null. */
export function outsideAllowed(field: FieldDescriptor, value: unknown): string | null {
  if (value === null && field.choices === null) return null;
  const got = `got ${showValue(value, field.type)}`;
  if (field.choices && !field.choices.some((c) => JSON.stringify(c.value) === JSON.stringify(value))) {
    return `must be ${allowedText({ type: field.type, choices: field.choices, bounds: null })}, ${got}`;
  }
  const b = field.bounds;
  if (!b || typeof value !== "number") return null;
  let ok = !Number.isNaN(value);
  if (ok && b.minimum !== null) ok = b.exclusiveMinimum ? value > b.minimum : value >= b.minimum;
  if (ok && b.maximum !== null) ok = b.exclusiveMaximum ? value < b.maximum : value <= b.maximum;
  return ok ? null : `must be ${allowedText({ type: field.type, choices: null, bounds: b })}, ${got}`;
}

function kindOf(type: string): FieldKind {
  if (type === "int" || type === "float") return "number";
  if (type === "bool") return "checkbox";
  if (type === "str") return "text";
  return "json"; // list, dict, any: JSON text
}

export function fieldFor(spec: ParameterSpec): FieldDescriptor {
  const kind = kindOf(spec.type);
  const choices = Array.isArray(spec.choices)
    ? spec.choices.map((value) => ({
        value,
        text: formText(kind, value),
        label: typeof value === "string" ? value : JSON.stringify(value),
      }))
    : null;
  const minimum = typeof spec.minimum === "number" ? spec.minimum : null;
  const maximum = typeof spec.maximum === "number" ? spec.maximum : null;
  const bounds =
    minimum === null && maximum === null
      ? null
      : { minimum, maximum, exclusiveMinimum: spec.exclusive_minimum === true, exclusiveMaximum: spec.exclusive_maximum === true };
  const base = { name: spec.name, type: spec.type, help: spec.help ?? "", default: spec.default, choices, bounds };
  switch (spec.type) {
    case "int":
    case "float":
      return {
        ...base,
        kind: "number",
        step: spec.type === "int" ? "1" : "any",
        initial: typeof spec.default === "number" ? String(spec.default) : "",
      };
    case "bool":
      return { ...base, kind: "checkbox", initial: spec.default === true };
    case "str":
      return { ...base, kind: "text", initial: typeof spec.default === "string" ? spec.default : "" };
    default: // list, dict, any: JSON text
      return {
        ...base,
        kind: "json",
        initial: spec.default === undefined ? "" : JSON.stringify(spec.default),
      };
  }
}

export function fieldsFor(specs: readonly ParameterSpec[]): FieldDescriptor[] {
  return specs.map(fieldFor);
}

export type Coerced = { ok: true; value: unknown } | { ok: false; error: string };

/** A raw form value -> the parameter's typed value, or an error naming the parameter: of the
 *  wrong type, or outside the declared choices or range (`steps: must be >= 1, got -5`). */
export function coerceValue(field: FieldDescriptor, raw: string | boolean): Coerced {
  const c = coerceType(field, raw);
  if (!c.ok) return c;
  const why = outsideAllowed(field, c.value);
  return why === null ? c : { ok: false, error: `${field.name}: ${why}` };
}

function coerceType(field: FieldDescriptor, raw: string | boolean): Coerced {
  const bad = (why: string): Coerced => ({ ok: false, error: `${field.name}: ${why}` });
  if (field.kind === "checkbox") return { ok: true, value: raw === true || raw === "true" };
  const text = typeof raw === "string" ? raw : String(raw);
  if (field.kind === "number") {
    const t = text.trim();
    if (t === "") return bad(`expected ${field.type === "int" ? "an integer" : "a number"}`);
    const n = Number(t);
    if (!Number.isFinite(n)) return bad(`${JSON.stringify(t)} is not a number`);
    if (field.type === "int" && !Number.isInteger(n)) return bad(`${t} is not an integer`);
    return { ok: true, value: n };
  }
  if (field.kind === "text") return { ok: true, value: text };
  // json
  const t = text.trim();
  if (t === "") return { ok: true, value: null };
  let value: unknown;
  try {
    value = JSON.parse(t);
  } catch (e) {
    return bad(`not valid JSON (${(e as Error).message})`);
  }
  if (field.type === "list" && !Array.isArray(value)) return bad("expected a JSON list [...]");
  if (field.type === "dict" && (value === null || typeof value !== "object" || Array.isArray(value)))
    return bad("expected a JSON object {...}");
  return { ok: true, value };
}

function sameJSON(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

export interface Collected {
  ok: boolean;
  /** the values that differ from the notebook's defaults (what POST /runs is sent) */
  parameters: Record<string, unknown>;
  errors: string[];
}

/** Raw form values (by name) -> the parameters to launch with: changed values only, so a
 *  default the server could not express as JSON is never overwritten. */
export function collectParameters(
  fields: readonly FieldDescriptor[],
  raws: Record<string, string | boolean | undefined>,
): Collected {
  const parameters: Record<string, unknown> = {};
  const errors: string[] = [];
  for (const f of fields) {
    const raw = raws[f.name];
    if (raw === undefined || raw === f.initial) continue;
    const c = coerceValue(f, raw);
    if (!c.ok) errors.push(c.error);
    else if (!sameJSON(c.value, f.default)) parameters[f.name] = c.value;
  }
  return { ok: errors.length === 0, parameters, errors };
}

// -- runs -------------------------------------------------------------------------------------

export interface FailingCell {
  index?: number;
  executed_index?: number;
  source?: string;
  ename?: string;
  evalue?: string;
}

export interface RunSummary {
  id: string;
  notebook: string;
  parameters: Record<string, unknown>;
  status: string; // queued | running | complete | failed
  started?: string | null;
  finished?: string | null;
  progress?: { executed: number; total: number } | null;
  failing_cell?: FailingCell | null;
  error?: string | null;
  report?: string | null;
  record?: string | null;
  duration_s?: number | null;
  /** client side: when this panel launched it (ms since epoch), until the server lists it */
  launchedAt?: number;
}

export interface RunListState {
  runs: RunSummary[];
  error: string | null;
  lastPoll: number | null;
}

export const initialRunState: RunListState = { runs: [], error: null, lastPoll: null };

export type RunAction =
  | { type: "polled"; runs: RunSummary[]; at: number }
  | { type: "launched"; run: RunSummary; at: number }
  | { type: "updated"; run: RunSummary }
  | { type: "error"; message: string };

/** how long a run launched here is shown before the server lists it */
export const LAUNCH_GRACE_MS = 30_000;

const STATUS_RANK: Record<string, number> = { complete: 2, failed: 2, running: 1, queued: 0 };

/** One entry per id: a finished (published) entry wins over a running (staged) one. */
export function dedupeRuns(runs: readonly RunSummary[]): RunSummary[] {
  const byId = new Map<string, RunSummary>();
  for (const r of runs) {
    const prev = byId.get(r.id);
    if (!prev || (STATUS_RANK[r.status] ?? 0) > (STATUS_RANK[prev.status] ?? 0)) byId.set(r.id, r);
  }
  return [...byId.values()];
}

function startKey(r: RunSummary): number {
  if (r.started) {
    const t = Date.parse(r.started);
    if (!Number.isNaN(t)) return t;
  }
  return Number.POSITIVE_INFINITY; // launched, not started yet: on top
}

/** Newest first: by start time (runs not started yet on top, newest launch first), then by
 *  id for stability. */
export function sortRuns(runs: readonly RunSummary[]): RunSummary[] {
  return [...runs].sort((a, b) => {
    const ka = startKey(a);
    const kb = startKey(b);
    if (ka !== kb) return kb > ka ? 1 : -1;
    const la = a.launchedAt ?? 0;
    const lb = b.launchedAt ?? 0;
    return lb - la || a.id.localeCompare(b.id);
  });
}

export function reduceRuns(state: RunListState, action: RunAction): RunListState {
  switch (action.type) {
    case "polled": {
      const polled = dedupeRuns(action.runs);
      const seen = new Set(polled.map((r) => r.id));
      const local = state.runs.filter(
        (r) => !seen.has(r.id) && r.launchedAt !== undefined && action.at - r.launchedAt < LAUNCH_GRACE_MS,
      );
      return { runs: sortRuns([...local, ...polled]), error: null, lastPoll: action.at };
    }
    case "launched": {
      const others = state.runs.filter((r) => r.id !== action.run.id);
      const existing = state.runs.find((r) => r.id === action.run.id);
      const run = existing && !isActive(existing) ? existing : { ...action.run, launchedAt: action.at };
      return { ...state, runs: sortRuns([...others, run]) };
    }
    case "updated": {
      const others = state.runs.filter((r) => r.id !== action.run.id);
      return { ...state, runs: sortRuns([...others, action.run]) };
    }
    case "error":
      return { ...state, error: action.message };
  }
}

export function notebookName(path: string): string {
  const base = path.split(/[\\/]/).pop() ?? path;
  return base.replace(/\.ipynb$/, "");
}

/** Queued (waiting for a free worker) or running: a run that can be cancelled. */
export function isActive(run: RunSummary): boolean {
  return run.status === "running" || run.status === "queued";
}

export function isCancelled(run: RunSummary): boolean {
  return run.status === "failed" && /cancelled/i.test(run.error ?? "");
}

/** `queued`, `running 3/7 cells`, `complete (12.3 s)`, `failed`, `cancelled`. */
export function statusLabel(run: RunSummary): string {
  if (run.status === "running") {
    const p = run.progress;
    return p && p.total > 0 ? `running ${p.executed}/${p.total} cells` : "running";
  }
  if (run.status === "complete") {
    return typeof run.duration_s === "number" ? `complete (${run.duration_s.toFixed(1)} s)` : "complete";
  }
  if (isCancelled(run)) return "cancelled";
  return run.status;
}

/** For a failed run: `cell 2 (`raise ValueError()`): ValueError: boom`, else its error. */
export function failureLine(run: RunSummary): string | null {
  if (run.status !== "failed") return null;
  const c = run.failing_cell;
  if (c) return `cell ${c.index ?? "?"} (\`${c.source ?? ""}\`): ${c.ename ?? "Error"}: ${c.evalue ?? ""}`;
  return run.error ?? "failed";
}

export function progressFraction(run: RunSummary): number | null {
  const p = run.progress;
  if (run.status === "complete") return 1;
  if (!p || p.total <= 0) return null;
  return Math.min(1, Math.max(0, p.executed / p.total));
}

// -- records ----------------------------------------------------------------------------------

export interface KeyValue {
  key: string;
  value: string;
}

export interface RecordSummary {
  title: string;
  created: string;
  fingerprints: KeyValue[];
  forecastRisk: string | null;
  /** the calibrated forecast (schema 1.2 `forecast.expected`): "expected +12 points (8-16), 80%
   *  interval, calibration <id>, held-out coverage 80%", or null */
  forecastExpected: string | null;
  forecast: KeyValue[];
  /** the audit's scalars (base vs tuned: measured shifts and behaviour) */
  audit: KeyValue[];
  /** how the audit section was read, when not plainly as `audit` (schema 1.0's `degradation`) */
  auditNote: string | null;
  /** the judge of the behaviour figures (schema 1.3 `judge`): "openai gpt-4o
   *  (https://api.openai.com/v1)", or null when the record names none */
  judgeLine: string | null;
  /** the judge's identity: its scalars, then `prompt <metric>` (template sha256) and its
   *  thresholds */
  judge: KeyValue[];
  patches: { name: string; efficacy: KeyValue[] }[];
  verification: { ok: boolean; checks: number; failed: string[]; error: string | null };
}

function asObject(v: unknown): Record<string, unknown> | null {
  return v !== null && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
}

export function formatValue(v: unknown): string {
  if (v === null || v === undefined) return "—";
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toPrecision(4);
  if (typeof v === "string") return v;
  if (typeof v === "boolean") return v ? "yes" : "no";
  return JSON.stringify(v);
}

function scalars(obj: Record<string, unknown> | null): KeyValue[] {
  if (!obj) return [];
  return Object.entries(obj)
    .filter(([, v]) => v === null || typeof v !== "object")
    .map(([key, value]) => ({ key, value: formatValue(value) }));
}

/** The audit section: `audit` (record schema 1.1), or `degradation`, its name in schema 1.0
 *  records, with a note saying which was read. */
export function auditSection(record: Record<string, unknown>): { audit: KeyValue[]; note: string | null } {
  const hasAudit = "audit" in record;
  const hasLegacy = "degradation" in record;
  if (hasAudit && hasLegacy) {
    return {
      audit: scalars(asObject(record.audit)),
      note: "this record has both `audit` and `degradation` (schema 1.0's name for the audit): showing `audit`",
    };
  }
  if (hasLegacy) {
    const v = typeof record.schema_version === "string" ? record.schema_version : "?";
    return {
      audit: scalars(asObject(record.degradation)),
      note:
        v === "1.0"
          ? "schema 1.0 record: the audit is stored as `degradation`"
          : `the audit is stored as \`degradation\`, schema 1.0's name for it (this record says schema ${v})`,
    };
  }
  return { audit: scalars(asObject(record.audit)), note: null };
}

/** One line for a calibrated forecast's `expected` object (null when absent or unreadable). */
export function expectedLine(e: Record<string, unknown> | null): string | null {
  if (!e) return null;
  const text = typeof e.text === "string" && e.text ? e.text : null;
  if (text === null && typeof e.points !== "number") return null;
  const parts = [text ?? `expected ${formatValue(e.points)} points`];
  if (typeof e.level === "number") parts.push(`${Math.round(100 * e.level)}% interval`);
  if (typeof e.calibration === "string") parts.push(`calibration ${e.calibration}`);
  if (typeof e.coverage === "number") parts.push(`held-out coverage ${Math.round(100 * e.coverage)}%`);
  return parts.join(", ");
}

/** `{kind} {name}`, then in brackets its model (when not its name) and endpoint, as
 *  `workbench.record.judge_line` writes it (without its `judge: `); null without a judge. */
export function judgeLine(j: Record<string, unknown> | null): string | null {
  if (!j) return null;
  const str = (v: unknown) => (typeof v === "string" && v ? v : null);
  const name = str(j.name) ?? "?";
  const extra: string[] = [];
  const model = str(j.model);
  if (model !== null && model !== name) extra.push(`model ${model}`);
  const endpoint = str(j.endpoint);
  if (endpoint !== null) extra.push(endpoint);
  return `${str(j.kind) ?? "?"} ${name}${extra.length ? ` (${extra.join(", ")})` : ""}`;
}

/** The judge's rows: its scalars, each prompt template's sha256 (`prompt aligned`), its
 *  thresholds. */
export function judgeRows(j: Record<string, unknown> | null): KeyValue[] {
  if (!j) return [];
  const prompts = Object.entries(asObject(j.prompts) ?? {}).map(([m, v]) => ({
    key: `prompt ${m}`,
    value: formatValue(v),
  }));
  return [...scalars(j), ...prompts, ...scalars(asObject(j.thresholds))];
}

export function summarizeRecord(record: Record<string, unknown>): RecordSummary {
  const fingerprints: KeyValue[] = [];
  for (const part of ["subject", "dictionary"]) {
    const o = asObject(record[part]);
    if (o && typeof o.fingerprint === "string") {
      fingerprints.push({ key: `${part}${typeof o.name === "string" ? ` (${o.name})` : ""}`, value: o.fingerprint });
    }
  }
  const forecast = asObject(record.forecast);
  let forecastRisk: string | null = null;
  if (forecast) {
    const key = Object.keys(forecast).find((k) => /risk/i.test(k));
    if (key !== undefined) forecastRisk = formatValue(forecast[key]);
  }
  const forecastExpected = expectedLine(asObject(forecast?.expected));
  const patches = (Array.isArray(record.patches) ? record.patches : []).map((p, i) => {
    const o = asObject(p) ?? {};
    const desc = asObject(o.patch);
    const name =
      (desc && (typeof desc.name === "string" ? desc.name : typeof desc.kind === "string" ? desc.kind : null)) ??
      (typeof o.patch === "string" ? o.patch : `patch ${i}`);
    return { name, efficacy: scalars(asObject(o.efficacy)) };
  });
  const audit = auditSection(record);
  const judge = asObject(record.judge);
  const v = asObject(record.verification) ?? {};
  const failed = (Array.isArray(v.failed) ? v.failed : []).map((f) => {
    const o = asObject(f) ?? {};
    return typeof o.message === "string" && o.message ? `${formatValue(o.field)}: ${o.message}` : formatValue(o.field);
  });
  return {
    title: typeof record.title === "string" && record.title ? record.title : "(untitled record)",
    created: typeof record.created === "string" ? record.created : "",
    fingerprints,
    forecastRisk,
    forecastExpected,
    forecast: scalars(forecast),
    audit: audit.audit,
    auditNote: audit.note,
    judgeLine: judgeLine(judge),
    judge: judgeRows(judge),
    patches,
    verification: {
      ok: v.ok === true,
      checks: typeof v.checks === "number" ? v.checks : 0,
      failed,
      error: typeof v.error === "string" ? v.error : null,
    },
  };
}
