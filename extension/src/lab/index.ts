// JupyterLab 4 prebuilt extension: the Workbench panel (left sidebar), report and record tabs.
import {
  ILayoutRestorer,
  type JupyterFrontEnd,
  type JupyterFrontEndPlugin,
} from "@jupyterlab/application";
import { ICommandPalette, IFrame, MainAreaWidget } from "@jupyterlab/apputils";
import { LabIcon } from "@jupyterlab/ui-components";

import { api } from "./api";
import type { RunSummary } from "./model";
import { WorkbenchPanel } from "./panel";
import { RecordView } from "./record";
import { injectStyle } from "./style";

export const PLUGIN_ID = "workbench:plugin";
export const OPEN_PANEL = "workbench:open-panel";

const workbenchIcon = new LabIcon({
  name: "workbench:icon",
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" width="16"><g class="jp-icon3" fill="#616161">' +
    '<path d="M3 4h18v3H3zM5 9h2v11H5zM17 9h2v11h-2zM9 11h6v2H9z"/></g></svg>',
});

function openReport(app: JupyterFrontEnd, run: RunSummary): void {
  const id = `workbench-report-${run.id}`;
  for (const w of app.shell.widgets("main")) {
    if (w.id === id) {
      app.shell.activateById(id);
      return;
    }
  }
  const frame = new IFrame({ sandbox: ["allow-scripts", "allow-popups"] });
  frame.url = api.reportURL(run.id);
  frame.addClass("jp-wb-report");
  const widget = new MainAreaWidget({ content: frame });
  widget.id = id;
  widget.title.label = `Report ${run.id.slice(0, 8)}`;
  widget.title.icon = workbenchIcon;
  widget.title.closable = true;
  app.shell.add(widget, "main");
  app.shell.activateById(id);
}

function openRecord(app: JupyterFrontEnd, run: RunSummary): void {
  const id = `workbench-record-tab-${run.id}`;
  for (const w of app.shell.widgets("main")) {
    if (w.id === id) {
      app.shell.activateById(id);
      return;
    }
  }
  const view = new RecordView(run.id);
  const widget = new MainAreaWidget({ content: view });
  widget.id = id;
  widget.title.label = view.title.label;
  widget.title.icon = workbenchIcon;
  widget.title.closable = true;
  app.shell.add(widget, "main");
  app.shell.activateById(id);
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: "The Workbench panel: launch analysis notebooks and follow their runs.",
  autoStart: true,
  optional: [ICommandPalette, ILayoutRestorer],
  activate: (
    app: JupyterFrontEnd,
    palette: ICommandPalette | null,
    restorer: ILayoutRestorer | null,
  ) => {
    injectStyle();
    const panel = new WorkbenchPanel({
      openReport: (run) => openReport(app, run),
      openRecord: (run) => openRecord(app, run),
    });
    panel.title.icon = workbenchIcon;
    panel.title.caption = "Workbench";
    app.shell.add(panel, "left", { rank: 900 });
    if (restorer) restorer.add(panel, "workbench-panel");

    app.commands.addCommand(OPEN_PANEL, {
      label: "Open the Workbench panel",
      caption: "Show the Workbench panel: analyses and runs",
      execute: () => {
        app.shell.activateById(panel.id);
        void panel.loadAnalyses();
      },
    });
    if (palette) palette.addItem({ command: OPEN_PANEL, category: "Workbench" });
  },
};

export default plugin;
