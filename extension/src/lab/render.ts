// Rendering a deployment record to DOM (no JupyterLab, no Lumino): `renderRecord` gives the
// readable sections and the verification verdict. Shared by the run-record tab (`RecordView`,
// record.ts) and the record viewer of files and notebook outputs (mime.ts).
import { h } from "./dom";
import type { KeyValue } from "./model";
import { type Verdict, describeRecord } from "./records";

function table(rows: KeyValue[], cls = "jp-wb-kv"): HTMLElement {
  if (rows.length === 0) return h("p", { class: "jp-wb-muted" }, "none");
  return h(
    "table",
    { class: cls },
    h("tbody", {}, ...rows.map((r) => h("tr", { "data-key": r.key }, h("th", {}, r.key), h("td", {}, r.value)))),
  );
}

/** The verdict: a headline, then the failed checks (field, expected, actual, message). */
export function verdictElement(v: Verdict): HTMLElement {
  const cls = { ok: "jp-wb-ok", failed: "jp-wb-error", pending: "jp-wb-muted", unknown: "jp-wb-warn" }[v.status];
  return h(
    "div",
    { class: `jp-wb-verdict ${cls}`, "data-wb": "verification", "data-status": v.status },
    h("p", { "data-wb": "verification-headline" }, v.headline),
    v.failures.length
      ? h(
          "table",
          { class: "jp-wb-kv jp-wb-failures", "data-wb": "verification-failures" },
          h("thead", {}, h("tr", {}, h("th", {}, "field"), h("th", {}, "expected"), h("th", {}, "actual"))),
          h(
            "tbody",
            {},
            ...v.failures.map((f) =>
              h(
                "tr",
                { "data-field": f.field, title: f.message },
                h("td", { class: "jp-wb-mono" }, f.field),
                h("td", { class: "jp-wb-mono" }, f.expected),
                h("td", { class: "jp-wb-mono" }, f.actual),
              ),
            ),
          ),
        )
      : null,
    ...v.notes.map((n) => h("p", { class: "jp-wb-muted" }, n)),
  );
}

/** A record's readable sections under its title; `subtitle` says where it comes from. */
export function renderRecord(record: Record<string, unknown>, subtitle: string, verdict: Verdict): HTMLElement[] {
  const s = describeRecord(record);
  const sections: [string, string, Node][] = [
    ["fingerprints", "Fingerprints", table(s.allFingerprints, "jp-wb-kv jp-wb-mono")],
    [
      "forecast",
      "Forecast",
      h(
        "div",
        {},
        s.forecastExpected !== null
          ? h("p", { "data-wb": "forecast-expected" }, h("strong", {}, "Expected: "), s.forecastExpected)
          : null,
        s.forecastRisk !== null ? h("p", {}, h("strong", {}, "Risk: "), s.forecastRisk) : null,
        table(s.forecast),
      ),
    ],
    [
      "audit",
      "Audit (measured shifts and behaviour)",
      h(
        "div",
        {},
        s.auditNote !== null ? h("p", { class: "jp-wb-muted", "data-wb": "audit-note" }, s.auditNote) : null,
        table(s.audit),
      ),
    ],
    ...(s.judgeLine === null
      ? []
      : ([
          [
            "judge",
            "Judge (of the behaviour figures)",
            h(
              "div",
              {},
              h("p", { "data-wb": "judge-line" }, h("strong", {}, "Judge: "), s.judgeLine),
              table(s.judge, "jp-wb-kv jp-wb-mono"),
            ),
          ],
        ] as [string, string, Node][])),
    ["features", "Watched features", table(s.features)],
    [
      "overlaps",
      "Feature overlap",
      s.overlaps.length === 0
        ? h("p", { class: "jp-wb-muted" }, "none")
        : h("div", {}, ...s.overlaps.map((o) => h("section", {}, h("h3", {}, o.title), table(o.rows)))),
    ],
    [
      "patches",
      "Patches",
      s.patches.length === 0
        ? h("p", { class: "jp-wb-muted" }, "none")
        : h("div", {}, ...s.patches.map((p) => h("section", {}, h("h3", {}, p.name), table(p.efficacy)))),
    ],
  ];
  return [
    h("h1", { "data-wb": "record-title" }, s.title),
    h("p", { class: "jp-wb-muted", "data-wb": "record-source" }, `${subtitle}${s.created ? ` · created ${s.created}` : ""}`),
    verdictElement(verdict),
    ...sections.map(([key, title, body]) => h("section", { "data-section": key }, h("h2", {}, title), body)),
  ];
}
