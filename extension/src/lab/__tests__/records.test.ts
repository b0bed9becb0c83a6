// @vitest-environment jsdom
import { describe, expect, it } from "vitest";

import {
  RECORD_FILE_PATTERN,
  RECORD_MIME,
  describeRecord,
  inlineList,
  isRecordFile,
  parseVerification,
  stateFromError,
  verdictFor,
} from "../records";
import { renderRecord, verdictElement } from "../render";
import { DEFAULT_REFRESH_MS, refreshInterval } from "../settings";

const SUB = "3f".repeat(32);
const SAE = "9e".repeat(32);
const DATA = "0a".repeat(32);

/** The shape build_record writes (workbench/record/schema.json v1.1), trimmed. */
const RECORD = {
  schema_version: "1.1",
  created: "2026-02-03T04:05:06+00:00",
  title: "alignment audit",
  subject: { name: "organism-small", source: "organism", fingerprint: SUB, files: [] },
  dictionary: { name: "sae-small", hook_name: "blocks.0.hook_resid_post", fingerprint: SAE, files: [] },
  data: { insecure: { path: "/x/insecure.jsonl", sha256: DATA, n_records: 40 } },
  features: {
    name: "persona",
    dictionary: SAE,
    n_features: 48,
    top: [
      { feature: 7, rank: 0, effect: 1.25, auroc: 0.875, ci_low: 1, ci_high: 1.5 },
      { feature: 3, rank: 1, effect: 0.5, auroc: 0.75, ci_low: 0.25, ci_high: 0.75 },
    ],
  },
  overlaps: [{ feature: 7, neighbors: [{ feature: 1, cosine: 0.5 }, { feature: 2, cosine: 0.25 }] }],
  forecast: { method: "gradient", risk: 0.3125, n_examples: 40, paths: [{}] },
  audit: { base: SUB, spearman: 0.625, actual_risk: 0.25, behaviour_base: {} },
  patches: [{ patch: { kind: "steer", alpha: -1 }, efficacy: { misaligned_change: -0.25, task_loss: null } }],
  context_audits: [],
};

/** The same record as schema 1.0 wrote it: the audit section under its old name. */
function asSchema10(record: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(record).map(([k, v]) =>
      k === "audit" ? ["degradation", v] : k === "schema_version" ? [k, "1.0"] : [k, v],
    ),
  );
}

describe("record files", () => {
  it("matches record.json and *.record.json only (by base name)", () => {
    expect(RECORD_MIME).toBe("application/vnd.workbench.record+json");
    for (const ok of ["record.json", "runs/ab12/record.json", "audit.record.json", "a/b.c.record.json"]) {
      expect(isRecordFile(ok)).toBe(true);
    }
    for (const no of ["myrecord.json", "record.json.bak", "records.json", "record.jsonl", "record/notes.json"]) {
      expect(isRecordFile(no)).toBe(false);
    }
    // JupyterLab builds a RegExp from the pattern string and matches the base name
    expect("audit.record.json".match(RECORD_FILE_PATTERN)?.index).toBe(5);
  });
});

describe("record details", () => {
  it("lists every fingerprint, the features, overlaps, forecast, audit and patches", () => {
    const d = describeRecord(RECORD);
    expect(d.title).toBe("alignment audit");
    expect(d.allFingerprints).toEqual([
      { key: "subject (organism-small)", value: SUB },
      { key: "dictionary (sae-small)", value: SAE },
      { key: "data insecure (40 records)", value: DATA },
    ]);
    expect(d.features).toEqual([
      { key: "name", value: "persona" },
      { key: "n_features", value: "48" },
      { key: "feature 7", value: "effect 1.250, auroc 0.8750, ci_low 1, ci_high 1.500" },
      { key: "feature 3", value: "effect 0.5000, auroc 0.7500, ci_low 0.2500, ci_high 0.7500" },
    ]);
    expect(d.overlaps).toEqual([
      { title: "feature 7", rows: [{ key: "neighbors", value: "feature 1 (cosine 0.5000), feature 2 (cosine 0.2500)" }] },
    ]);
    expect(d.forecastRisk).toBe("0.3125");
    expect(d.audit.map((r) => r.key)).toEqual(["base", "spearman", "actual_risk"]);
    expect(d.audit.find((r) => r.key === "spearman")?.value).toBe("0.6250");
    expect(d.auditNote).toBeNull();
    expect(d.patches).toEqual([
      { name: "steer", efficacy: [{ key: "misaligned_change", value: "-0.2500" }, { key: "task_loss", value: "—" }] },
    ]);
  });

  it("shows a schema 1.0 record's `degradation` as its audit", () => {
    const old = asSchema10(RECORD);
    expect("audit" in old).toBe(false);
    const d = describeRecord(old);
    expect(d.audit).toEqual(describeRecord(RECORD).audit);
    expect(d.auditNote).toBe("schema 1.0 record: the audit is stored as `degradation`");
  });

  it("abbreviates long lists", () => {
    expect(inlineList([1, 2, 3, 4, 5, 6, 7], 3)).toBe("1, 2, 3, … (7 in all)");
  });
});

describe("verification verdicts", () => {
  const failed = {
    ok: false,
    checks: 7,
    failed: [{ field: "subject.fingerprint", expected: "0".repeat(64), actual: SUB, message: "state-dict sha256 differs" }],
    skipped: ["dictionary.fingerprint not re-derived: no sae_weights.safetensors among its files"],
  };

  it("says how many checks passed", () => {
    const r = parseVerification({ ok: true, checks: 7, failed: [], skipped: [] });
    expect(r).not.toBeNull();
    expect(verdictFor({ kind: "result", result: r! })).toEqual({
      status: "ok",
      headline: "verified: 7 checks passed",
      failures: [],
      notes: [],
    });
  });

  it("lists the failures with field, expected and actual", () => {
    const v = verdictFor({ kind: "result", result: parseVerification(failed)! });
    expect(v.status).toBe("failed");
    expect(v.headline).toBe("NOT verified: 1 of 7 checks failed");
    expect(v.failures).toEqual([
      { field: "subject.fingerprint", expected: "0".repeat(64), actual: SUB, message: "state-dict sha256 differs" },
    ]);
    expect(v.notes).toEqual([
      "not checked: dictionary.fingerprint not re-derived: no sae_weights.safetensors among its files",
    ]);
  });

  it("shows the verifier's notes before what was not checked", () => {
    const note = "schema 1.0 record, checked against schema 1.0: its `degradation` section is the audit";
    const v = verdictFor({ kind: "result", result: parseVerification({ ...failed, ok: true, failed: [], notes: [note] })! });
    expect(v.status).toBe("ok");
    expect(v.notes).toEqual([
      note,
      "not checked: dictionary.fingerprint not re-derived: no sae_weights.safetensors among its files",
    ]);
    expect(parseVerification({ ok: true, checks: 1 })?.notes).toEqual([]); // servers that send none
  });

  it("explains why there is no verification", () => {
    expect(verdictFor({ kind: "needs-file" }).headline).toMatch(/^verification needs the record's file/);
    expect(verdictFor({ kind: "pending", path: "a/record.json" }).headline).toBe("verifying a/record.json…");
    const err = verdictFor({ kind: "result", result: parseVerification({ ok: false, error: "not JSON", checks: 0 })! });
    expect(err.headline).toBe("verification failed: not JSON");
    // no server extension: jupyter_server's own 404 page (or no answer at all)
    expect(stateFromError(404, "404 Not Found")).toEqual({ kind: "unavailable", reason: "404: 404 Not Found" });
    expect(stateFromError(0, "the server did not answer")).toEqual({
      kind: "unavailable",
      reason: "no answer: the server did not answer",
    });
    expect(verdictFor(stateFromError(0, "x")).headline).toMatch(/^verification unavailable: the workbench server/);
    // the endpoint's own refusals are shown as such
    expect(stateFromError(404, "no record file at 'x/record.json' under the server root").kind).toBe("refused");
    expect(verdictFor(stateFromError(403, "path 'e/record.json' refused: outside")).headline).toBe(
      "verification refused: path 'e/record.json' refused: outside",
    );
    expect(parseVerification("nope")).toBeNull();
  });
});

describe("record rendering (DOM)", () => {
  it("renders the sections and the failed checks", () => {
    const verdict = verdictFor({
      kind: "result",
      result: parseVerification({ ok: false, checks: 3, failed: [{ field: "data.insecure.sha256", expected: DATA, actual: "missing" }] })!,
    });
    const root = document.createElement("div");
    root.append(...renderRecord(RECORD, "audit/record.json", verdict));
    expect(root.querySelector('[data-wb="record-title"]')?.textContent).toBe("alignment audit");
    expect(root.querySelector('[data-wb="record-source"]')?.textContent).toBe(
      "audit/record.json · created 2026-02-03T04:05:06+00:00",
    );
    const sections = [...root.querySelectorAll("section[data-section] > h2")].map((e) => e.textContent);
    expect(sections).toEqual([
      "Fingerprints",
      "Forecast",
      "Audit (measured shifts and behaviour)",
      "Watched features",
      "Feature overlap",
      "Patches",
    ]);
    const row = root.querySelector('[data-section="fingerprints"] tr[data-key="data insecure (40 records)"] td');
    expect(row?.textContent).toBe(DATA);
    expect(root.querySelector('[data-section="forecast"] p')?.textContent).toBe("Risk: 0.3125");
    expect(root.querySelector('[data-section="audit"] tr[data-key="spearman"] td')?.textContent).toBe("0.6250");
    expect(root.querySelector('[data-wb="audit-note"]')).toBeNull();
    expect(root.querySelector('[data-section="degradation"]')).toBeNull();
    const fail = root.querySelector('[data-wb="verification-failures"] tr[data-field="data.insecure.sha256"]');
    expect([...(fail?.children ?? [])].map((c) => c.textContent)).toEqual(["data.insecure.sha256", DATA, "missing"]);
    expect(root.querySelector('[data-wb="verification"]')?.getAttribute("data-status")).toBe("failed");
    const ok = verdictElement(verdictFor({ kind: "result", result: parseVerification({ ok: true, checks: 2 })! }));
    expect(ok.textContent).toBe("verified: 2 checks passed");
  });

  it("renders the judge after the audit when the record names one (schema 1.3)", () => {
    const verdict = verdictFor({ kind: "result", result: parseVerification({ ok: true, checks: 3 })! });
    const judge = { kind: "exact", name: "organism-exact", prompts: {}, thresholds: { aligned_below: 30 } };
    const root = document.createElement("div");
    root.append(...renderRecord({ ...RECORD, judge }, "audit/record.json", verdict));
    const sections = [...root.querySelectorAll("section[data-section]")].map((e) => e.getAttribute("data-section"));
    expect(sections).toEqual(["fingerprints", "forecast", "audit", "judge", "features", "overlaps", "patches"]);
    const section = root.querySelector('[data-section="judge"]');
    expect(section?.querySelector("h2")?.textContent).toBe("Judge (of the behaviour figures)");
    expect(section?.querySelector('[data-wb="judge-line"]')?.textContent).toBe("Judge: exact organism-exact");
    expect(section?.querySelector('tr[data-key="aligned_below"] td')?.textContent).toBe("30");
    // a null judge (nothing judged) shows no section
    const none = document.createElement("div");
    none.append(...renderRecord({ ...RECORD, judge: null }, "audit/record.json", verdict));
    expect(none.querySelector('[data-section="judge"]')).toBeNull();
  });

  it("renders a schema 1.0 record's audit under the same heading, with a note", () => {
    const verdict = verdictFor({ kind: "result", result: parseVerification({ ok: true, checks: 3 })! });
    const root = document.createElement("div");
    root.append(...renderRecord(asSchema10(RECORD), "old/record.json", verdict));
    const audit = root.querySelector('[data-section="audit"]');
    expect(audit?.querySelector("h2")?.textContent).toBe("Audit (measured shifts and behaviour)");
    expect(audit?.querySelector('[data-wb="audit-note"]')?.textContent).toBe(
      "schema 1.0 record: the audit is stored as `degradation`",
    );
    expect(audit?.querySelector('tr[data-key="spearman"] td')?.textContent).toBe("0.6250");
    expect(root.querySelector('[data-section="degradation"]')).toBeNull();
  });
});

describe("settings", () => {
  it("reads the refresh interval, with the panel's default and a floor", () => {
    expect(DEFAULT_REFRESH_MS).toBe(2000);
    expect(refreshInterval(5000)).toBe(5000);
    expect(refreshInterval(100)).toBe(500);
    expect(refreshInterval(undefined)).toBe(2000);
    expect(refreshInterval("fast")).toBe(2000);
  });
});
