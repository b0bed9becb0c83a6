/**
 * Neighborhood widget (`workbench.widgets.Neighborhood`): the centre feature and its decoder
 * neighbours as an SVG radial graph. Clicking a node sets `selection = [id]` and saves.
 */

import type { NeighborhoodEdge, NeighborhoodNode, NeighborhoodState, Render } from "./contract";
import { DEFAULTS } from "./contract";
import { BASE_CSS, createRoot, ensureStyle, h, s, setFlag } from "./dom";
import { edgeWidth, formatNumber, nodeRadius, radialLayout } from "./selection";

const CSS = `${BASE_CSS}
.wb-neighborhood { padding: 6px; }
.wb-neighborhood svg { display: block; width: 100%; overflow: visible; }
.wb-neighborhood .wb-edge { fill: none; stroke-linecap: round; }
.wb-neighborhood .wb-edge.wb-pos { stroke: var(--jp-brand-color1, #1976d2); }
.wb-neighborhood .wb-edge.wb-neg { stroke: var(--jp-error-color1, #e64a19); stroke-dasharray: 5 3; }
.wb-neighborhood .wb-edge.wb-ring { opacity: 0.45; }
.wb-neighborhood .wb-node { cursor: pointer; outline: none; }
.wb-neighborhood .wb-node circle {
  fill: var(--jp-layout-color2, #eee);
  stroke: var(--jp-border-color1, #999);
  stroke-width: 1.5;
}
.wb-neighborhood .wb-node:hover circle, .wb-neighborhood .wb-node:focus-visible circle {
  stroke: var(--jp-brand-color1, #1976d2);
  stroke-width: 2.5;
}
.wb-neighborhood .wb-node[data-center="true"] circle {
  fill: var(--jp-brand-color3, #bbdefb);
  stroke: var(--jp-brand-color1, #1976d2);
  stroke-width: 2.5;
}
.wb-neighborhood .wb-node[data-selected="true"] circle { stroke-width: 3.5; }
.wb-neighborhood .wb-node text {
  fill: var(--jp-ui-font-color1, #222);
  font-size: 11px;
  text-anchor: middle;
  dominant-baseline: central;
  pointer-events: none;
  user-select: none;
}
.wb-neighborhood .wb-node text.wb-node-label { fill: var(--jp-ui-font-color2, #666); font-size: 10px; }
.wb-neighborhood .wb-empty { padding: 12px; }
`;

/** Logical drawing width; the SVG scales to the output's width (viewBox). */
const VIEW_WIDTH = 640;

function nodeTitle(node: NeighborhoodNode, isCenter: boolean): string {
  const lines = [`#${node.id}${node.label ? ` ${node.label}` : ""}${isCenter ? " (centre)" : ""}`];
  if (!isCenter && node.cosine !== null && node.cosine !== undefined) lines.push(`cosine ${formatNumber(node.cosine)}`);
  if (node.coactivation !== null && node.coactivation !== undefined) {
    lines.push(`coactivation ${formatNumber(node.coactivation)}`);
  }
  if (node.value !== null && node.value !== undefined) lines.push(`value ${formatNumber(node.value)}`);
  return lines.join("\n");
}

function shortLabel(label: string, max = 18): string {
  return label.length > max ? `${label.slice(0, max - 1)}…` : label;
}

/** Build the graph's SVG (pure function of the state; exported for tests). */
export function buildGraph(
  nodes: readonly NeighborhoodNode[],
  edges: readonly NeighborhoodEdge[],
  center: number,
  height: number,
  selection: readonly number[] = [],
): SVGSVGElement {
  const width = VIEW_WIDTH;
  const svg = s("svg", {
    viewBox: `0 0 ${width} ${height}`,
    height,
    preserveAspectRatio: "xMidYMid meet",
    role: "img",
    "aria-label": `neighbourhood of feature ${center}`,
  });
  const layout = radialLayout(nodes, center, width, height, { margin: 40 });
  const byId = new Map<number, NeighborhoodNode>();
  for (const n of nodes) if (!byId.has(n.id)) byId.set(n.id, n);
  let maxCoact = 0;
  for (const n of byId.values()) {
    if (typeof n.coactivation === "number" && Number.isFinite(n.coactivation)) {
      maxCoact = Math.max(maxCoact, n.coactivation);
    }
  }

  // Edges first (under the nodes); centre edges last so they sit above neighbour-neighbour ones.
  const edgeLayer = s("g", { class: "wb-edges" });
  const sorted = [...edges].sort((a, b) => {
    const ca = a.source === center || a.target === center ? 1 : 0;
    const cb = b.source === center || b.target === center ? 1 : 0;
    return ca - cb || Math.abs(a.cosine) - Math.abs(b.cosine);
  });
  for (const e of sorted) {
    const p = layout.positions.get(e.source);
    const q = layout.positions.get(e.target);
    if (!p || !q || e.source === e.target) continue;
    const toCenter = e.source === center || e.target === center;
    const sign = e.cosine < 0 ? "wb-neg" : "wb-pos";
    const line = s("line", {
      class: `wb-edge ${sign}${toCenter ? "" : " wb-ring"}`,
      x1: p.x.toFixed(2),
      y1: p.y.toFixed(2),
      x2: q.x.toFixed(2),
      y2: q.y.toFixed(2),
      "stroke-width": edgeWidth(e.cosine).toFixed(2),
      "data-source": e.source,
      "data-target": e.target,
      "data-cosine": e.cosine,
    });
    line.append(s("title", {}, `#${e.source} – #${e.target}: cosine ${formatNumber(e.cosine)}`));
    edgeLayer.append(line);
  }
  svg.append(edgeLayer);

  const nodeLayer = s("g", { class: "wb-nodes" });
  const selected = new Set(selection);
  const ordered = [...(byId.has(center) ? [center] : []), ...layout.order];
  for (const id of ordered) {
    const node = byId.get(id);
    const pos = layout.positions.get(id);
    if (!node || !pos) continue;
    const isCenter = id === center;
    let r = nodeRadius(node.coactivation, maxCoact);
    if (isCenter) r = Math.max(r, 14);
    const g = s("g", {
      class: "wb-node",
      "data-id": id,
      "data-center": isCenter ? "true" : null,
      "data-selected": selected.has(id) ? "true" : null,
      transform: `translate(${pos.x.toFixed(2)} ${pos.y.toFixed(2)})`,
      tabindex: 0,
      role: "button",
      "aria-label": `feature ${id}${node.label ? ` ${node.label}` : ""}`,
    });
    g.append(s("title", {}, nodeTitle(node, isCenter)));
    g.append(s("circle", { r: r.toFixed(2) }));
    g.append(s("text", {}, String(id)));
    if (node.label) {
      // Label outside the disc: below it for the centre, away from the centre for neighbours.
      const dx = isCenter ? 0 : Math.sin(pos.angle) * (r + 10);
      const dy = isCenter ? r + 11 : -Math.cos(pos.angle) * (r + 10);
      const anchor = isCenter || Math.abs(dx) < 4 ? "middle" : dx > 0 ? "start" : "end";
      g.append(
        s(
          "text",
          { class: "wb-node-label", x: dx.toFixed(1), y: dy.toFixed(1), style: `text-anchor: ${anchor}` },
          shortLabel(node.label),
        ),
      );
    }
    nodeLayer.append(g);
  }
  svg.append(nodeLayer);
  return svg;
}

const render: Render<NeighborhoodState> = ({ model, el }) => {
  ensureStyle(el, "wb-style-neighborhood", CSS);
  const root = createRoot(el, "neighborhood");
  const title = h("div", { class: "wb-title" });
  const body = h("div", { class: "wb-body" });
  root.append(title, body);

  const draw = () => {
    title.textContent = model.get("title") ?? "";
    setFlag(root, el, "selection", JSON.stringify(model.get("selection") ?? []));
    const nodes = model.get("nodes") ?? [];
    const edges = model.get("edges") ?? [];
    const height = Number(model.get("height")) || DEFAULTS.neighborhood.height;
    if (nodes.length === 0) {
      body.replaceChildren(h("div", { class: "wb-empty wb-muted" }, "No neighbourhood to show."));
      setFlag(root, el, "nodes", "0");
      setFlag(root, el, "rendered", "1");
      return;
    }
    body.replaceChildren(buildGraph(nodes, edges, model.get("center"), height, model.get("selection") ?? []));
    setFlag(root, el, "nodes", String(nodes.length));
    setFlag(root, el, "rendered", "1");
  };

  const choose = (target: EventTarget | null) => {
    const node = target instanceof Element ? target.closest(".wb-node") : null;
    if (!node || !body.contains(node)) return;
    const id = Number(node.getAttribute("data-id"));
    if (!Number.isInteger(id)) return;
    model.set("selection", [id]);
    model.save_changes();
  };
  const onClick = (ev: Event) => choose(ev.target);
  const onKey = (ev: KeyboardEvent) => {
    if (ev.key === "Enter" || ev.key === " ") {
      ev.preventDefault();
      choose(ev.target);
    }
  };
  body.addEventListener("click", onClick);
  body.addEventListener("keydown", onKey);

  const events = ["change:nodes", "change:edges", "change:center", "change:height", "change:title", "change:selection"];
  for (const e of events) model.on(e, draw);
  draw();

  return () => {
    for (const e of events) model.off(e, draw);
    body.removeEventListener("click", onClick);
    body.removeEventListener("keydown", onKey);
    root.remove();
  };
};

export default { render };
