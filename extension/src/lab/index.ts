// JupyterLab 4 prebuilt extension: the Workbench panel (left sidebar), report and record tabs.
// Its settings (schema/plugin.json): `refreshInterval`, how often the run list polls (ms).
// The record viewer (files and notebook outputs) is the mime extension of mime.ts.
import {
  ILayoutRestorer,
  type JupyterFrontEnd,
  type JupyterFrontEndPlugin,
} from "@jupyterlab/application";
import { ICommandPalette, IFrame, MainAreaWidget } from "@jupyterlab/apputils";
import { ISettingRegistry } from "@jupyterlab/settingregistry";

import { api } from "./api";
import { workbenchIcon } from "./icon";
import type { RunSummary } from "./model";
import { WorkbenchPanel } from "./panel";
import { RecordView } from "./record";
import { refreshInterval } from "./settings";
import { injectStyle } from "./style";

// the template's convention: <package name>:<plugin>; its settings schema is schema/plugin.json
export const PLUGIN_ID = "@workbench/extension:plugin";
export const OPEN_PANEL = "workbench:open-panel";

function followSettings(registry: ISettingRegistry, panel: WorkbenchPanel): void {
  const apply = (settings: ISettingRegistry.ISettings) =>
    panel.setPollInterval(refreshInterval(settings.get("refreshInterval").composite));
  registry
    .load(PLUGIN_ID)
    .then((settings) => {
      apply(settings);
      settings.changed.connect(apply);
    })
    .catch((reason: unknown) => console.warn(`workbench: settings not loaded (${String(reason)})`));
}

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
  optional: [ICommandPalette, ILayoutRestorer, ISettingRegistry],
  activate: (
    app: JupyterFrontEnd,
    palette: ICommandPalette | null,
    restorer: ILayoutRestorer | null,
    settings: ISettingRegistry | null,
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
    if (settings) followSettings(settings, panel);

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
