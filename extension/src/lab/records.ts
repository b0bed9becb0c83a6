// Pure logic of the record viewer (no DOM, no JupyterLab): unit-tested with vitest.
//  * which files are deployment records (the viewer's file type);
//  * a record -> its readable sections (extends model.ts's summarizeRecord with the data files'
//    fingerprints, the watched features and the feature overlaps); the audit is `audit`, or
//    `degradation` in schema 1.0 records;
//  * a verification (the server's `verification` object, or why there is none) -> a verdict:
//    a headline, the failed checks (field, expected, actual) and what was not checked.
import { type KeyValue, type RecordSummary, formatValue, summarizeRecord } from "./model";

/** The MIME type of a deployment record's JSON (`workbench.record.RECORD_MIME`). */
export const RECORD_MIME = "application/vnd.workbench.record+json";
/** Files the viewer opens by default: `record.json` (what runs write) and `*.record.json`
 *  (JupyterLab matches a file type's `pattern` against the file's base name). */
export const RECORD_FILE_PATTERN = "(^|[./])record\\.json$";

const RECORD_FILE = new RegExp(RECORD_FILE_PATTERN);

export function isRecordFile(path: string): boolean {
  return RECORD_FILE.test(path.split("/").pop() ?? path);
}

// -- sections ---------------------------------------------------------------------------------

export interface Titled {
  title: string;
  rows: KeyValue[];
}

export interface RecordDetails extends RecordSummary {
  /** every fingerprint: subject, dictionary, then each data file (`data <name>`) */
  allFingerprints: KeyValue[];
  /** the watched features: their set's scalars, then the strongest (`feature 12`) */
  features: KeyValue[];
  /** one entry per overlap measurement */
  overlaps: Titled[];
}

function asObject(v: unknown): Record<string, unknown> | null {
  return v !== null && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
}

/** `effect 0.3000, auroc 0.9000` from an object's scalar fields (except those in `skip`). */
export function inlineScalars(obj: Record<string, unknown>, skip: readonly string[] = []): string {
  return Object.entries(obj)
    .filter(([k, v]) => !skip.includes(k) && (v === null || typeof v !== "object"))
    .map(([k, v]) => `${k} ${formatValue(v)}`)
    .join(", ");
}

/** A list for a table cell: objects inline (`feature 1 (cosine 0.5000)`), at most `max`. */
export function inlineList(items: readonly unknown[], max = 5): string {
  const shown = items.slice(0, max).map((item) => {
    const o = asObject(item);
    if (!o) return formatValue(item);
    const head = "feature" in o ? `feature ${formatValue(o.feature)}` : null;
    const rest = inlineScalars(o, head ? ["feature"] : []);
    return head ? (rest ? `${head} (${rest})` : head) : rest;
  });
  const more = items.length > max ? `, … (${items.length} in all)` : "";
  return shown.join(", ") + more;
}

function dataFingerprints(data: unknown): KeyValue[] {
  const o = asObject(data);
  if (!o) return [];
  return Object.entries(o).flatMap(([name, entry]) => {
    const e = asObject(entry);
    if (!e || typeof e.sha256 !== "string") return [];
    const n = typeof e.n_records === "number" ? ` (${e.n_records} records)` : "";
    return [{ key: `data ${name}${n}`, value: e.sha256 }];
  });
}

function featureRows(features: unknown, top = 5): KeyValue[] {
  const f = asObject(features);
  if (!f) return [];
  const rows = Object.entries(f)
    .filter(([k, v]) => k !== "dictionary" && (v === null || typeof v !== "object"))
    .map(([key, value]) => ({ key, value: formatValue(value) }));
  const strongest = Array.isArray(f.top) ? f.top : [];
  for (const row of strongest.slice(0, top)) {
    const r = asObject(row);
    if (r) rows.push({ key: `feature ${formatValue(r.feature)}`, value: inlineScalars(r, ["feature", "rank"]) });
  }
  return rows;
}

function overlapSections(overlaps: unknown): Titled[] {
  return (Array.isArray(overlaps) ? overlaps : []).map((item, i) => {
    const o = asObject(item) ?? {};
    const title =
      "feature" in o ? `feature ${formatValue(o.feature)}` : typeof o.name === "string" ? o.name : `overlap ${i}`;
    const rows = Object.entries(o)
      .filter(([k]) => k !== "feature" && k !== "name")
      .map(([key, value]) => ({
        key,
        value: Array.isArray(value) ? inlineList(value) : formatValue(value),
      }));
    return { title, rows };
  });
}

/** A record's readable sections (`summarizeRecord`'s, plus data fingerprints, features and
 *  overlaps). */
export function describeRecord(record: Record<string, unknown>): RecordDetails {
  const s = summarizeRecord(record);
  return {
    ...s,
    allFingerprints: [...s.fingerprints, ...dataFingerprints(record.data)],
    features: featureRows(record.features),
    overlaps: overlapSections(record.overlaps),
  };
}

// -- verification -----------------------------------------------------------------------------

export interface FailedCheck {
  field: string;
  expected: string;
  actual: string;
  message: string;
}

/** The server's `verification` object (GET /workbench/runs/<id>/record embeds it,
 *  GET /workbench/records/verify?path= answers it). */
export interface VerificationResult {
  ok: boolean;
  checks: number;
  failed: FailedCheck[];
  skipped: string[];
  /** how the record was read (`Verification.notes`), e.g. a schema 1.0 record's `degradation`
   *  section taken as the audit; absent from servers that do not send it */
  notes: string[];
  error: string | null;
}

export function parseVerification(v: unknown): VerificationResult | null {
  const o = asObject(v);
  if (!o) return null;
  const str = (x: unknown) => (typeof x === "string" ? x : formatValue(x));
  return {
    ok: o.ok === true,
    checks: typeof o.checks === "number" ? o.checks : 0,
    failed: (Array.isArray(o.failed) ? o.failed : []).map((f) => {
      const c = asObject(f) ?? {};
      return { field: str(c.field), expected: str(c.expected), actual: str(c.actual), message: str(c.message ?? "") };
    }),
    skipped: (Array.isArray(o.skipped) ? o.skipped : []).map(str),
    notes: (Array.isArray(o.notes) ? o.notes : []).map(str),
    error: typeof o.error === "string" ? o.error : null,
  };
}

/** Where the viewer's verification stands. */
export type VerificationState =
  | { kind: "result"; result: VerificationResult }
  | { kind: "pending"; path: string }
  | { kind: "needs-file" }
  | { kind: "unavailable"; reason: string }
  | { kind: "refused"; status: number; message: string };

export interface Verdict {
  status: "ok" | "failed" | "pending" | "unknown";
  headline: string;
  failures: FailedCheck[];
  notes: string[];
}

export function verdictFor(state: VerificationState): Verdict {
  switch (state.kind) {
    case "result": {
      const r = state.result;
      const notes = [...r.notes, ...r.skipped.map((s) => `not checked: ${s}`)];
      if (r.error !== null) {
        return { status: "failed", headline: `verification failed: ${r.error}`, failures: r.failed, notes };
      }
      if (r.ok) {
        const n = r.checks;
        return { status: "ok", headline: `verified: ${n} check${n === 1 ? "" : "s"} passed`, failures: [], notes };
      }
      return {
        status: "failed",
        headline: `NOT verified: ${r.failed.length} of ${r.checks} checks failed`,
        failures: r.failed,
        notes,
      };
    }
    case "pending":
      return { status: "pending", headline: `verifying ${state.path}…`, failures: [], notes: [] };
    case "needs-file":
      return {
        status: "unknown",
        headline:
          "verification needs the record's file: open record.json from the file browser, " +
          "or run `workbench record verify record.json`",
        failures: [],
        notes: [],
      };
    case "unavailable":
      return {
        status: "unknown",
        headline:
          "verification unavailable: the workbench server extension is not running " +
          "(enable workbench.server, or run `workbench record verify record.json`)",
        failures: [],
        notes: [state.reason],
      };
    case "refused":
      return { status: "failed", headline: `verification refused: ${state.message}`, failures: [], notes: [] };
  }
}

/** An error of GET /workbench/records/verify -> the state to show. No answer (status 0) or a
 *  404 that is not the endpoint's own (it says "no record file") means the server extension is
 *  not there. */
export function stateFromError(status: number, message: string): VerificationState {
  if (status === 0 || (status === 404 && !/no record file/.test(message))) {
    return { kind: "unavailable", reason: `${status || "no answer"}: ${message}` };
  }
  return { kind: "refused", status, message };
}
