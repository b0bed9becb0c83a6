/** The feature map's stylesheet (JupyterLab CSS variables with fallbacks, see CONTRACT.md). */

import { BASE_CSS } from "../dom";

export const CSS = `${BASE_CSS}
.wb-feature-map { padding: 6px; }
.wb-feature-map .wb-header { display: flex; align-items: flex-end; justify-content: space-between; gap: 12px; flex-wrap: wrap; }
.wb-feature-map .wb-plot {
  position: relative;
  box-sizing: content-box;
  width: 100%;
  overflow: hidden;
  border: 1px solid var(--jp-border-color2, #ddd);
  border-radius: 3px;
  background: var(--jp-layout-color1, #fff);
}
.wb-feature-map canvas.wb-canvas { display: block; width: 100%; }
.wb-feature-map .wb-legend { display: flex; align-items: center; gap: 6px; font-size: 11px; margin-bottom: 6px; }
.wb-feature-map .wb-legend[hidden] { display: none; }
.wb-feature-map .wb-legend-title { font-weight: 600; }
.wb-feature-map .wb-legend-bar { width: 140px; height: 10px; border-radius: 2px; border: 1px solid var(--jp-border-color2, #ddd); }
.wb-feature-map .wb-legend-missing { display: inline-flex; align-items: center; gap: 3px; color: var(--jp-ui-font-color2, #666); }
.wb-feature-map .wb-legend-missing[hidden] { display: none; }
.wb-feature-map .wb-swatch { width: 10px; height: 10px; border-radius: 50%; display: inline-block; }
.wb-feature-map .wb-card {
  position: absolute;
  z-index: 2;
  pointer-events: none;
  max-width: 320px;
  padding: 6px 8px;
  border-radius: 4px;
  border: 1px solid var(--jp-border-color1, #bbb);
  background: var(--jp-layout-color0, #fff);
  color: var(--jp-ui-font-color1, #222);
  box-shadow: var(--jp-elevation-z4, 0 2px 6px rgba(0, 0, 0, 0.2));
  font-size: 12px;
}
.wb-feature-map .wb-card[hidden] { display: none; }
.wb-feature-map .wb-card-head { display: flex; gap: 6px; align-items: baseline; }
.wb-feature-map .wb-card-index { font-weight: 700; }
.wb-feature-map .wb-card-label:empty { display: none; }
.wb-feature-map .wb-card-value { color: var(--jp-ui-font-color2, #666); font-family: var(--jp-code-font-family, monospace); }
.wb-feature-map .wb-card-contexts { margin: 4px 0 0 0; padding-left: 18px; font-family: var(--jp-code-font-family, monospace); font-size: 11px; }
.wb-feature-map .wb-card-contexts:empty { display: none; }
.wb-feature-map .wb-card-contexts li { white-space: pre-wrap; word-break: break-word; margin: 1px 0; }
.wb-feature-map .wb-hint { font-size: 11px; color: var(--jp-ui-font-color3, #999); margin-top: 3px; }
`;
