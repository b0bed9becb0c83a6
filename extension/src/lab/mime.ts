// The record viewer: a JupyterLab rendermime extension (package.json `jupyterlab.mimeExtension`)
// for `application/vnd.workbench.record+json`. It renders notebook outputs of that MIME type
// (`workbench.record.display_record`) and is the default viewer of `record.json` and
// `*.record.json` files ("Open With > Editor" stays available). A file's viewer asks the server
// to verify the file (GET /workbench/records/verify?path=); an output has no file to verify.
import type { IRenderMime } from "@jupyterlab/rendermime-interfaces";
import { Widget } from "@lumino/widgets";

import { h, setChildren } from "./dom";
import { workbenchIcon } from "./icon";
import { verifyRecordFile } from "./record";
import { RECORD_FILE_PATTERN, RECORD_MIME, isRecordFile, verdictFor } from "./records";
import { renderRecord, verdictElement } from "./render";
import { injectStyle } from "./style";

export const RENDERER_ID = "@workbench/extension:record-renderer";
export const FILE_TYPE = "workbench-record";
export const FACTORY = "Workbench record";

/** The path (relative to the server root) of the record file a renderer shows, or null when it
 *  renders a notebook output. In a document its parent is the MimeContent (`jp-MimeDocument`)
 *  of a DocumentWidget, whose context knows the path. */
export function documentPath(widget: Widget): string | null {
  const content = widget.parent;
  if (!content || !content.hasClass("jp-MimeDocument")) return null;
  const doc = content.parent as unknown as { context?: { path?: unknown } } | null;
  const path = doc?.context?.path;
  return typeof path === "string" && isRecordFile(path) ? path : null;
}

export class RecordRenderer extends Widget implements IRenderMime.IRenderer {
  private generation = 0;

  constructor(private readonly options: IRenderMime.IRendererOptions) {
    super();
    injectStyle();
    this.addClass("jp-wb-record");
    this.addClass("jp-wb-record-viewer");
  }

  renderModel(model: IRenderMime.IMimeModel): Promise<void> {
    const data = model.data[this.options.mimeType];
    const generation = ++this.generation;
    if (data === null || typeof data !== "object" || Array.isArray(data)) {
      setChildren(
        this.node,
        h("p", { class: "jp-wb-error", "data-wb": "record-error" },
          `not a deployment record: ${RECORD_MIME} must hold a JSON object (workbench.record.build_record)`),
      );
      return Promise.resolve();
    }
    const record = data as Record<string, unknown>;
    const path = documentPath(this);
    const state = path ? { kind: "pending" as const, path } : { kind: "needs-file" as const };
    setChildren(this.node, ...renderRecord(record, path ?? "notebook output", verdictFor(state)));
    if (path) void this.verify(path, generation);
    return Promise.resolve();
  }

  private async verify(path: string, generation: number): Promise<void> {
    const state = await verifyRecordFile(path);
    if (generation !== this.generation || this.isDisposed) return; // re-rendered meanwhile
    this.node.querySelector('[data-wb="verification"]')?.replaceWith(verdictElement(verdictFor(state)));
  }
}

const extension: IRenderMime.IExtension = {
  id: RENDERER_ID,
  description: "The deployment-record viewer: record.json files and workbench record outputs.",
  rendererFactory: {
    safe: true, // builds its DOM from text nodes only
    mimeTypes: [RECORD_MIME],
    createRenderer: (options) => new RecordRenderer(options),
  },
  rank: 0,
  dataType: "json",
  fileTypes: [
    {
      name: FILE_TYPE,
      displayName: "Workbench record",
      mimeTypes: [RECORD_MIME],
      extensions: [".record.json"],
      pattern: RECORD_FILE_PATTERN,
      fileFormat: "text",
      icon: workbenchIcon.name, // by name: the shell resolves it (LabIcon.resolve)
    },
  ],
  documentWidgetFactoryOptions: {
    name: FACTORY,
    primaryFileType: FILE_TYPE,
    fileTypes: [FILE_TYPE],
    defaultFor: [FILE_TYPE],
  },
};

export default extension;
