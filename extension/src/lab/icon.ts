// The workbench's icon (the panel's sidebar tab, its tabs, the record file type).
import { LabIcon } from "@jupyterlab/ui-components";

export const workbenchIcon = new LabIcon({
  name: "workbench:icon",
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" width="16"><g class="jp-icon3" fill="#616161">' +
    '<path d="M3 4h18v3H3zM5 9h2v11H5zM17 9h2v11h-2zM9 11h6v2H9z"/></g></svg>',
});
