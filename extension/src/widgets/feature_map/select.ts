/**
 * Selection, both ways. JS -> Python: regl-scatterplot's click and lasso selections (and a
 * click on empty space, which clears) write `selection` and save. Python -> JS: a new
 * `selection` is applied to the plot without an event (so it is not echoed back). Either way
 * the root carries `data-selection` (JSON, up to 1000 indices) and `data-selection-count` for
 * browser tests.
 */

import type { FeatureMapState, WidgetModel } from "../contract";
import { nearestPoint, sameSelection, screenToData, sortedUnique } from "../selection";
import type { PointTable } from "./points";
import type { Scatterplot } from "./scatter";

type Flag = (key: string, value: string | undefined) => void;

export class SelectionSync {
  private destroyed = false;
  private downX = NaN;
  private downY = NaN;
  private sp: Scatterplot | null = null;
  private canvas: HTMLCanvasElement | null = null;

  constructor(
    private readonly model: WidgetModel<FeatureMapState>,
    private readonly table: PointTable,
    private readonly flag: Flag,
  ) {
    this.show(this.current());
  }

  /** The model's selection, sorted and without repeats. */
  current(): number[] {
    return sortedUnique(this.model.get("selection") ?? []);
  }

  /** Python -> JS (`change:selection`): select the points in the plot, without an event. */
  readonly onModelChange = () => {
    this.show(this.current());
    const sp = this.sp;
    if (this.destroyed || !sp || !sp.get("isPointsDrawn")) return; // a pending draw applies it
    const sel = this.current().filter((i) => i < this.table.count);
    if (sameSelection(sel, sortedUnique(sp.get("selectedPoints") ?? []))) return;
    if (sel.length === 0) sp.deselect({ preventEvent: true });
    else sp.select(sel, { preventEvent: true });
  };

  /** Follow the plot's selection events and the canvas's clicks; returns the subscriptions. */
  attach(sp: Scatterplot, canvas: HTMLCanvasElement): unknown[] {
    this.sp = sp;
    this.canvas = canvas;
    canvas.addEventListener("mousedown", this.onMouseDown);
    canvas.addEventListener("click", this.onClick);
    return [
      sp.subscribe("select", ({ points }) => this.write(sortedUnique(points))),
      sp.subscribe("deselect", () => this.write([])),
    ];
  }

  dispose(): void {
    this.destroyed = true;
    this.canvas?.removeEventListener("mousedown", this.onMouseDown);
    this.canvas?.removeEventListener("click", this.onClick);
  }

  private show(sel: readonly number[]): void {
    this.flag("selectionCount", String(sel.length));
    this.flag("selection", sel.length <= 1000 ? JSON.stringify(sel) : undefined);
  }

  /** JS -> Python. */
  private write(sel: number[]): void {
    if (this.destroyed) return;
    this.show(sel);
    if (sameSelection(sel, this.model.get("selection") ?? [])) return;
    this.model.set("selection", sel);
    this.model.save_changes();
  }

  private readonly onMouseDown = (ev: MouseEvent) => {
    this.downX = ev.clientX;
    this.downY = ev.clientY;
  };

  // Click on empty space clears the selection (regl-scatterplot only does so on double-click).
  // A click counts as "on a point" when regl-scatterplot's hover raycast found one; without a
  // preceding mouse move, a brute-force search in data space decides.
  private readonly onClick = (ev: MouseEvent) => {
    const sp = this.sp;
    const canvas = this.canvas;
    if (this.destroyed || !sp || !canvas) return;
    // how the click was read, for tests and bug reports (`data-last-click`)
    const note = (what: string) => this.flag("lastClick", what);
    if (!sp.get("isPointsDrawn")) return note("not-drawn");
    if (Math.hypot(ev.clientX - this.downX, ev.clientY - this.downY) >= 4) return note("drag"); // a drag / lasso
    if (ev.shiftKey || ev.altKey || ev.metaKey || ev.ctrlKey) return note("modifier");
    const hov = sp.get("hoveredPoint");
    if (typeof hov === "number" && hov >= 0) return note(`hover:${hov}`); // regl-scatterplot selected it
    const rect = canvas.getBoundingClientRect();
    if (!(rect.width > 0 && rect.height > 0)) return;
    const px = ev.clientX - rect.left;
    const py = ev.clientY - rect.top;
    const view = sp.get("cameraView");
    const [dx, dy] = screenToData(px, py, view, rect.width, rect.height);
    const radiusPx = Math.max(6, Number(this.model.get("point_size")) + 4);
    const [ex, ey] = screenToData(px + radiusPx, py, view, rect.width, rect.height);
    const hit = nearestPoint(this.table.xy, dx, dy, Math.hypot(ex - dx, ey - dy));
    note(`search:${hit} at ${dx.toFixed(3)},${dy.toFixed(3)}`);
    if (hit >= 0) sp.select([hit]);
    else if ((sp.get("selectedPoints") ?? []).length > 0) sp.deselect();
    else this.write([]);
  };
}
