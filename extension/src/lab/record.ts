// The run-record tab (`RecordView`, GET /workbench/runs/<id>/record, its verification embedded)
// and the client of GET /workbench/records/verify?path= (the file viewer's verification).
import { URLExt } from "@jupyterlab/coreutils";
import { ServerConnection } from "@jupyterlab/services";
import { Widget } from "@lumino/widgets";

import { WorkbenchAPIError, api, requestURL, workbenchURL } from "./api";
import { h, setChildren } from "./dom";
import {
  type VerificationResult,
  type VerificationState,
  parseVerification,
  stateFromError,
  verdictFor,
} from "./records";
import { renderRecord } from "./render";

/** GET /workbench/records/verify?path=<path relative to the server root>. */
export async function verifyRecordFile(
  path: string,
  settings: ServerConnection.ISettings = ServerConnection.makeSettings(),
): Promise<VerificationState> {
  const url = workbenchURL(settings, "records", "verify") + URLExt.objectToQueryString({ path });
  try {
    const result = parseVerification(await requestURL<unknown>(url, {}, settings));
    return result ? { kind: "result", result } : { kind: "refused", status: 200, message: "not a verification" };
  } catch (error) {
    const status = error instanceof WorkbenchAPIError ? error.status : 0;
    return stateFromError(status, (error as Error).message);
  }
}

/** The main-area tab of a run's record (its `verification` comes embedded). */
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
      setChildren(
        this.node,
        h("h2", {}, `Run ${this.runId}`),
        h("p", { class: "jp-wb-error", "data-wb": "record-error" }, (error as Error).message),
      );
    }
  }

  render(record: Record<string, unknown>): void {
    const result: VerificationResult | null = parseVerification(record.verification);
    const verdict = verdictFor(
      result ? { kind: "result", result } : { kind: "unavailable", reason: "the server sent no verification" },
    );
    setChildren(this.node, ...renderRecord(record, `run ${this.runId}`, verdict));
  }
}
