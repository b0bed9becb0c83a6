// The main-area view of a run's deployment record (GET /workbench/runs/<id>/record).
import { Widget } from "@lumino/widgets";

import { api } from "./api";
import { h, setChildren } from "./dom";
import { type KeyValue, summarizeRecord } from "./model";

function table(rows: KeyValue[], cls = "jp-wb-kv"): HTMLElement {
  if (rows.length === 0) return h("p", { class: "jp-wb-muted" }, "none");
  return h(
    "table",
    { class: cls },
    h("tbody", {}, ...rows.map((r) => h("tr", {}, h("th", {}, r.key), h("td", {}, r.value)))),
  );
}

export class RecordView extends Widget {
  constructor(readonly runId: string) {
    super();
    this.id = `workbench-record-${runId}`;
    this.title.label = `Record ${runId.slice(0, 8)}`;
    this.title.closable = true;
    this.addClass("jp-wb-record");
    this.node.append(h("p", { class: "jp-wb-muted" }, "Loading the record…"));
    void this.load();
  }

  async load(): Promise<void> {
    try {
      const record = await api.record(this.runId);
      this.render(record);
    } catch (error) {
      setChildren(this.node, 
        h("h2", {}, `Run ${this.runId}`),
        h("p", { class: "jp-wb-error", "data-wb": "record-error" }, (error as Error).message),
      );
    }
  }

  render(record: Record<string, unknown>): void {
    const s = summarizeRecord(record);
    const v = s.verification;
    const verdict = v.ok
      ? h("p", { class: "jp-wb-ok", "data-wb": "verification" }, `Verification: ok (${v.checks} checks)`)
      : h(
          "div",
          { class: "jp-wb-error", "data-wb": "verification" },
          h("p", {}, `Verification: FAILED (${v.failed.length} of ${v.checks} checks)`),
          v.error ? h("p", {}, v.error) : null,
          v.failed.length ? h("ul", {}, ...v.failed.map((f) => h("li", {}, f))) : null,
        );
    setChildren(this.node, 
      h("h1", { "data-wb": "record-title" }, s.title),
      h("p", { class: "jp-wb-muted" }, `run ${this.runId}${s.created ? ` · created ${s.created}` : ""}`),
      verdict,
      h("h2", {}, "Fingerprints"),
      table(s.fingerprints, "jp-wb-kv jp-wb-mono"),
      h("h2", {}, "Forecast"),
      s.forecastRisk !== null ? h("p", {}, h("strong", {}, "Risk: "), s.forecastRisk) : null,
      table(s.forecast),
      h("h2", {}, "Degradation"),
      table(s.degradation),
      h("h2", {}, "Patches"),
      s.patches.length === 0
        ? h("p", { class: "jp-wb-muted" }, "none")
        : h("div", {}, ...s.patches.map((p) => h("section", {}, h("h3", {}, p.name), table(p.efficacy)))),
    );
  }
}
