import { describe, expect, it } from "vitest";

import {
  type RunSummary,
  LAUNCH_GRACE_MS,
  coerceValue,
  collectParameters,
  dedupeRuns,
  expectedLine,
  failureLine,
  fieldFor,
  fieldsFor,
  initialRunState,
  isActive,
  judgeLine,
  notebookName,
  progressFraction,
  reduceRuns,
  sortRuns,
  statusLabel,
  summarizeRecord,
} from "../model";

describe("form fields from parameter specs", () => {
  it("maps each type to an input kind and initial value", () => {
    const fields = fieldsFor([
      { name: "n", type: "int", default: 3, help: "how many" },
      { name: "lr", type: "float", default: 0.5 },
      { name: "flag", type: "bool", default: true },
      { name: "label", type: "str", default: "abc" },
      { name: "layers", type: "list", default: [1, 2] },
      { name: "cfg", type: "dict", default: { a: 1 } },
      { name: "anything", type: "any", default: null },
    ]);
    expect(fields.map((f) => [f.name, f.kind, f.initial, f.step])).toEqual([
      ["n", "number", "3", "1"],
      ["lr", "number", "0.5", "any"],
      ["flag", "checkbox", true, undefined],
      ["label", "text", "abc", undefined],
      ["layers", "json", "[1,2]", undefined],
      ["cfg", "json", '{"a":1}', undefined],
      ["anything", "json", "null", undefined],
    ]);
    expect(fields[0]?.help).toBe("how many");
    expect(fields[1]?.help).toBe("");
  });

  it("handles missing or odd defaults", () => {
    expect(fieldFor({ name: "x", type: "int", default: null }).initial).toBe("");
    expect(fieldFor({ name: "s", type: "str", default: null }).initial).toBe("");
    expect(fieldFor({ name: "b", type: "bool", default: "yes" }).initial).toBe(false);
  });
});

describe("value coercion", () => {
  const int = fieldFor({ name: "x", type: "int", default: 1 });
  const float = fieldFor({ name: "f", type: "float", default: 1.5 });
  const list = fieldFor({ name: "l", type: "list", default: [] });
  const dict = fieldFor({ name: "d", type: "dict", default: {} });
  const any = fieldFor({ name: "a", type: "any", default: null });
  const bool = fieldFor({ name: "b", type: "bool", default: false });

  it("parses numbers and rejects non-integers for int", () => {
    expect(coerceValue(int, " 3 ")).toEqual({ ok: true, value: 3 });
    expect(coerceValue(float, "2.25")).toEqual({ ok: true, value: 2.25 });
    expect(coerceValue(float, "1e-3")).toEqual({ ok: true, value: 0.001 });
    expect(coerceValue(int, "2.5")).toEqual({ ok: false, error: "x: 2.5 is not an integer" });
    expect(coerceValue(int, "")).toMatchObject({ ok: false });
    expect(coerceValue(float, "abc")).toMatchObject({ ok: false });
  });

  it("parses JSON with shape checks", () => {
    expect(coerceValue(list, "[1, 2]")).toEqual({ ok: true, value: [1, 2] });
    expect(coerceValue(list, '{"a": 1}')).toEqual({ ok: false, error: "l: expected a JSON list [...]" });
    expect(coerceValue(dict, '{"a": 1}')).toEqual({ ok: true, value: { a: 1 } });
    expect(coerceValue(dict, "[1]")).toMatchObject({ ok: false });
    expect(coerceValue(any, "")).toEqual({ ok: true, value: null });
    expect(coerceValue(any, '"s"')).toEqual({ ok: true, value: "s" });
    const bad = coerceValue(any, "{nope");
    expect(bad.ok).toBe(false);
    if (!bad.ok) expect(bad.error).toMatch(/^a: not valid JSON/);
  });

  it("takes checkboxes and text as they are", () => {
    expect(coerceValue(bool, true)).toEqual({ ok: true, value: true });
    expect(coerceValue(bool, false)).toEqual({ ok: true, value: false });
    const str = fieldFor({ name: "s", type: "str", default: "" });
    expect(coerceValue(str, " spaced ")).toEqual({ ok: true, value: " spaced " });
  });

  it("collects only values that differ from the defaults", () => {
    const fields = fieldsFor([
      { name: "x", type: "int", default: 1 },
      { name: "lr", type: "float", default: 0.5 },
      { name: "flag", type: "bool", default: false },
      { name: "expr", type: "any", default: null }, // a non-literal default: never sent unchanged
      { name: "l", type: "list", default: [1, 2] },
    ]);
    const out = collectParameters(fields, { x: "3", lr: "0.50", flag: true, expr: "null", l: "[1,2]" });
    expect(out).toEqual({ ok: true, parameters: { x: 3, flag: true }, errors: [] });
    const bad = collectParameters(fields, { x: "three", l: "[1," });
    expect(bad.ok).toBe(false);
    expect(bad.errors).toHaveLength(2);
    expect(bad.parameters).toEqual({});
  });
});

const run = (over: Partial<RunSummary> & { id: string }): RunSummary => ({
  notebook: "/a/analyses/toy.ipynb",
  parameters: {},
  status: "complete",
  ...over,
});

describe("run list", () => {
  it("sorts newest first, runs not started yet on top", () => {
    const runs = sortRuns([
      run({ id: "aaa", started: "2026-01-01T00:00:00+00:00" }),
      run({ id: "bbb", started: "2026-01-02T00:00:00+00:00" }),
      run({ id: "ccc", status: "running", started: null }),
    ]);
    expect(runs.map((r) => r.id)).toEqual(["ccc", "bbb", "aaa"]);
  });

  it("dedupes by id, a finished entry winning over a staged one", () => {
    const runs = dedupeRuns([run({ id: "x", status: "running" }), run({ id: "x", status: "complete" })]);
    expect(runs).toHaveLength(1);
    expect(runs[0]?.status).toBe("complete");
  });

  it("merges polls and keeps a just-launched run until the server lists it", () => {
    let s = reduceRuns(initialRunState, { type: "launched", at: 1000, run: run({ id: "new", status: "running" }) });
    expect(s.runs.map((r) => r.id)).toEqual(["new"]);
    s = reduceRuns(s, { type: "polled", at: 2000, runs: [run({ id: "old", started: "2026-01-01T00:00:00Z" })] });
    expect(s.runs.map((r) => r.id)).toEqual(["new", "old"]);
    expect(s.lastPoll).toBe(2000);
    // listed now: the server's entry replaces the local one
    s = reduceRuns(s, {
      type: "polled",
      at: 3000,
      runs: [
        run({ id: "new", status: "running", started: "2026-01-03T00:00:00Z", progress: { executed: 1, total: 4 } }),
        run({ id: "old", started: "2026-01-01T00:00:00Z" }),
      ],
    });
    expect(s.runs[0]).toMatchObject({ id: "new", progress: { executed: 1, total: 4 } });
    expect(s.runs[0]?.launchedAt).toBeUndefined();
    // a local run never listed is dropped after the grace period
    s = reduceRuns(s, { type: "launched", at: 4000, run: run({ id: "ghost", status: "running" }) });
    s = reduceRuns(s, { type: "polled", at: 4000 + LAUNCH_GRACE_MS, runs: [] });
    expect(s.runs).toEqual([]);
  });

  it("keeps errors until the next successful poll, and applies updates", () => {
    let s = reduceRuns(initialRunState, { type: "error", message: "down" });
    expect(s.error).toBe("down");
    s = reduceRuns(s, { type: "polled", at: 1, runs: [run({ id: "r1", status: "running" })] });
    expect(s.error).toBeNull();
    s = reduceRuns(s, { type: "updated", run: run({ id: "r1", status: "failed", error: "cancelled by the user" }) });
    expect(s.runs).toHaveLength(1);
    expect(statusLabel(s.runs[0]!)).toBe("cancelled");
  });

  it("treats queued runs as active: cancellable, replaced by their running or finished entry", () => {
    const queued = run({ id: "q", status: "queued", error: null });
    expect([isActive(queued), isActive(run({ id: "r", status: "running" })), isActive(run({ id: "c" }))]).toEqual([
      true,
      true,
      false,
    ]);
    expect(statusLabel(queued)).toBe("queued");
    expect(failureLine(queued)).toBeNull();
    expect(dedupeRuns([queued, run({ id: "q", status: "running" })])[0]?.status).toBe("running");
    // launched again while queued: the new local entry replaces the queued one
    let s = reduceRuns(initialRunState, { type: "launched", at: 1, run: queued });
    s = reduceRuns(s, { type: "launched", at: 2, run: run({ id: "q", status: "running" }) });
    expect(s.runs).toMatchObject([{ id: "q", status: "running", launchedAt: 2 }]);
    // cancelled before it started
    s = reduceRuns(s, {
      type: "updated",
      run: run({ id: "q", status: "failed", error: "cancelled by the user before it started" }),
    });
    expect(statusLabel(s.runs[0]!)).toBe("cancelled");
  });

  it("labels statuses and failures", () => {
    expect(statusLabel(run({ id: "a", status: "running" }))).toBe("running");
    expect(statusLabel(run({ id: "a", status: "running", progress: { executed: 2, total: 5 } }))).toBe(
      "running 2/5 cells",
    );
    expect(statusLabel(run({ id: "a", duration_s: 3.14159 }))).toBe("complete (3.1 s)");
    expect(statusLabel(run({ id: "a" }))).toBe("complete");
    const failed = run({
      id: "f",
      status: "failed",
      failing_cell: { index: 2, source: "raise ValueError('boom')", ename: "ValueError", evalue: "boom" },
    });
    expect(statusLabel(failed)).toBe("failed");
    expect(failureLine(failed)).toBe("cell 2 (`raise ValueError('boom')`): ValueError: boom");
    expect(failureLine(run({ id: "g", status: "failed", error: "kernel died" }))).toBe("kernel died");
    expect(failureLine(run({ id: "h" }))).toBeNull();
    expect(progressFraction(run({ id: "p", status: "running", progress: { executed: 1, total: 4 } }))).toBe(0.25);
    expect(progressFraction(run({ id: "p", status: "running" }))).toBeNull();
    expect(notebookName("/x/y/toy.ipynb")).toBe("toy");
  });
});

describe("record summary", () => {
  it("extracts the readable sections", () => {
    const s = summarizeRecord({
      title: "Organism A",
      created: "2026-01-01T00:00:00+00:00",
      subject: { name: "tiny", fingerprint: "ab12" },
      dictionary: { name: "sae", fingerprint: "cd34" },
      forecast: { risk: 0.123456, horizon: 10, curve: [1, 2] },
      audit: { accuracy_drop: 0.02, ok: true },
      patches: [{ patch: { name: "ablate-7", kind: "ablation" }, efficacy: { harm: -0.5 } }, { efficacy: {} }],
      verification: { ok: false, checks: 5, failed: [{ field: "subject.fingerprint", message: "mismatch" }] },
    });
    expect(s.title).toBe("Organism A");
    expect(s.fingerprints).toEqual([
      { key: "subject (tiny)", value: "ab12" },
      { key: "dictionary (sae)", value: "cd34" },
    ]);
    expect(s.forecastRisk).toBe("0.1235");
    expect(s.forecast.map((k) => k.key)).toEqual(["risk", "horizon"]);
    expect(s.audit).toEqual([
      { key: "accuracy_drop", value: "0.02000" },
      { key: "ok", value: "yes" },
    ]);
    expect(s.auditNote).toBeNull();
    expect(s.patches).toEqual([
      { name: "ablate-7", efficacy: [{ key: "harm", value: "-0.5000" }] },
      { name: "patch 1", efficacy: [] },
    ]);
    expect(s.verification).toEqual({ ok: false, checks: 5, failed: ["subject.fingerprint: mismatch"], error: null });
  });

  it("reads the audit of a schema 1.0 record from `degradation`, and says so", () => {
    const section = { spearman: 0.625, n_tokens: 358 };
    const rows = [
      { key: "spearman", value: "0.6250" },
      { key: "n_tokens", value: "358" },
    ];
    const old = summarizeRecord({ schema_version: "1.0", degradation: section });
    expect(old.audit).toEqual(rows);
    expect(old.auditNote).toBe("schema 1.0 record: the audit is stored as `degradation`");
    // `degradation` under another version: still shown, and the note names the version
    const odd = summarizeRecord({ schema_version: "1.1", degradation: section });
    expect(odd.audit).toEqual(rows);
    expect(odd.auditNote).toBe("the audit is stored as `degradation`, schema 1.0's name for it (this record says schema 1.1)");
    // both names: `audit` wins, with a note
    const both = summarizeRecord({ schema_version: "1.1", audit: { spearman: 0.5 }, degradation: section });
    expect(both.audit).toEqual([{ key: "spearman", value: "0.5000" }]);
    expect(both.auditNote).toBe(
      "this record has both `audit` and `degradation` (schema 1.0's name for the audit): showing `audit`",
    );
    // neither, or a null audit: nothing to show, nothing to note
    for (const r of [{ schema_version: "1.1" }, { schema_version: "1.1", audit: null }]) {
      const s = summarizeRecord(r);
      expect(s.audit).toEqual([]);
      expect(s.auditNote).toBeNull();
    }
  });

  it("reads a calibrated forecast's expected points (schema 1.2)", () => {
    const s = summarizeRecord({
      forecast: {
        risk: 0.5,
        expected: { points: 12.3, low: 8.4, high: 15.2, level: 0.8, calibration: "2337d2529311",
                    coverage: 0.8, text: "expected +12 points (8-16)" },
      },
    });
    expect(s.forecastExpected).toBe(
      "expected +12 points (8-16), 80% interval, calibration 2337d2529311, held-out coverage 80%",
    );
    expect(s.forecast.map((k) => k.key)).toEqual(["risk"]); // the object is not a scalar row
    expect(expectedLine({ points: -3, level: 0.9 })).toBe("expected -3 points, 90% interval");
    expect(expectedLine({ level: 0.8 })).toBeNull();
    expect(summarizeRecord({ forecast: { risk: 1 } }).forecastExpected).toBeNull();
  });

  it("reads the judge of the behaviour figures (schema 1.3)", () => {
    const sha = (c: string) => c.repeat(64);
    const s = summarizeRecord({
      judge: {
        kind: "openai", name: "gpt-4o", model: "gpt-4o", endpoint: "http://127.0.0.1:8000/v1",
        prompts: { aligned: sha("a"), coherent: sha("b") }, top_logprobs: 20, min_mass: 0.25,
        thresholds: { aligned_below: 30, coherent_above: 50 },
      },
    });
    expect(s.judgeLine).toBe("openai gpt-4o (http://127.0.0.1:8000/v1)");
    expect(s.judge).toEqual([
      { key: "kind", value: "openai" },
      { key: "name", value: "gpt-4o" },
      { key: "model", value: "gpt-4o" },
      { key: "endpoint", value: "http://127.0.0.1:8000/v1" },
      { key: "top_logprobs", value: "20" },
      { key: "min_mass", value: "0.2500" },
      { key: "prompt aligned", value: sha("a") },
      { key: "prompt coherent", value: sha("b") },
      { key: "aligned_below", value: "30" },
      { key: "coherent_above", value: "50" },
    ]);
    expect(judgeLine({ kind: "exact", name: "organism-exact", prompts: {} })).toBe("exact organism-exact");
    expect(judgeLine({ kind: "hf", name: "mine", model: "judge-7b" })).toBe("hf mine (model judge-7b)");
    // none named (nothing judged, or a record from before schema 1.3)
    for (const r of [{}, { judge: null }]) {
      expect(summarizeRecord(r).judgeLine).toBeNull();
      expect(summarizeRecord(r).judge).toEqual([]);
    }
  });

  it("copes with an empty record", () => {
    const s = summarizeRecord({ verification: { ok: true, checks: 3 } });
    expect(s.title).toBe("(untitled record)");
    expect(s.forecastRisk).toBeNull();
    expect(s.patches).toEqual([]);
    expect(s.verification.ok).toBe(true);
  });
});
