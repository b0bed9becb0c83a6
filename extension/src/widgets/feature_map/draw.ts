/**
 * The draw loop: redraw requests (new positions, colours or highlight) are coalesced into one
 * draw at a time; while a draw is in flight, later requests wait and the newest state is drawn
 * next. A redraw with unchanged positions reuses the plot's spatial index.
 */

import type { Frame } from "./points";
import type { Scatterplot } from "./scatter";

export interface DrawHooks {
  /** Decode the model into rows (`positions`: the points moved); may throw. */
  read(positions: boolean): Frame;
  /** Before each draw, after a successful read (legend and title). */
  beforeDraw(frame: Frame): void;
  /** The indices to draw selected. */
  selection(): number[];
  /** After each draw. */
  afterDraw(frame: Frame): void;
  /** Once, after the first draw. */
  firstDraw(): void;
  /** A message for the notice line ("" clears it). */
  notice(text: string): void;
}

const message = (err: unknown) => (err instanceof Error ? err.message : String(err));

export class DrawLoop {
  private spatialIndex: ArrayBuffer | undefined;
  private positionsChanged = true;
  private pending = false;
  private drawing = false;
  private firstDrawDone = false;
  private destroyed = false;

  constructor(
    private readonly sp: Scatterplot,
    private readonly hooks: DrawHooks,
  ) {}

  request(positions: boolean): void {
    this.pending = true;
    if (positions) this.positionsChanged = true;
    void this.pump();
  }

  dispose(): void {
    this.destroyed = true;
  }

  private async pump(): Promise<void> {
    if (this.drawing || this.destroyed) return;
    this.drawing = true;
    try {
      while (this.pending && !this.destroyed) {
        this.pending = false;
        const positions = this.positionsChanged;
        this.positionsChanged = false;
        let frame: Frame;
        try {
          frame = this.hooks.read(positions);
        } catch (err) {
          if (positions) this.positionsChanged = true; // still owed once the data is readable
          this.hooks.notice(`Cannot draw: ${message(err)}`);
          continue;
        }
        if (frame.rebuilt) this.spatialIndex = undefined; // the old index no longer matches
        const reuseIndex = this.spatialIndex;
        this.hooks.beforeDraw(frame);
        const selection = this.hooks.selection().filter((i) => i < frame.rows.length);
        await this.sp.draw(frame.rows, {
          zDataType: "categorical",
          wDataType: "categorical",
          ...(reuseIndex ? { spatialIndex: reuseIndex } : {}),
          select: selection,
        });
        if (this.destroyed) return;
        this.spatialIndex = this.sp.get("spatialIndex");
        this.hooks.afterDraw(frame);
        if (!this.firstDrawDone) {
          this.firstDrawDone = true;
          this.hooks.firstDraw();
        }
      }
    } catch (err) {
      if (!this.destroyed) this.hooks.notice(`Drawing failed: ${message(err)}`);
    } finally {
      this.drawing = false;
    }
    // A request that arrived while an error unwound the loop.
    if (this.pending && !this.destroyed) void this.pump();
  }
}
