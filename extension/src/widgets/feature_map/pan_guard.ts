/**
 * A guard against the camera's spurious pan on a press.
 *
 * regl-scatterplot's camera (dom-2d-camera) pans, once per animation frame while the button is
 * down, by the pointer's travel since the *previous frame*. When the move that brought the
 * pointer onto the map and the press arrive within one frame (a pointer that jumps: a tablet, a
 * remote desktop, a test driver, or any click on a machine too loaded to draw often), the first
 * frame after the press counts that whole move as a drag. Seen on a loaded CI machine: a click
 * at the canvas centre panned the view by the pointer's travel from the page's corner, and
 * every later click missed its point.
 *
 * A view that changes by translation alone while the pointer has not moved since the press is
 * such a pan (a drag moves the pointer; a zoom changes the scale): the guard puts the view back
 * when the plot reports the change, and at the release (the plot redraws, and reports, only
 * when something asked it to draw), before the click that follows hit-tests against it.
 */

import type { Scatterplot } from "./scatter";

/** Pixels the pointer may move after the press and still be a click. */
const STILL_PX = 1;

export class PanGuard {
  private pressedView: number[] | null = null;
  private downX = NaN;
  private downY = NaN;
  private sp: Scatterplot | null = null;
  private canvas: HTMLCanvasElement | null = null;
  /** How many spurious pans were undone (for tests: `data-pans-undone`). */
  undone = 0;

  constructor(private readonly onUndo: (count: number) => void = () => {}) {}

  /** Watch presses on `canvas` and the plot's view; returns the plot subscription. */
  attach(sp: Scatterplot, canvas: HTMLCanvasElement): unknown[] {
    this.sp = sp;
    this.canvas = canvas;
    canvas.addEventListener("mousedown", this.onDown, true);
    window.addEventListener("mousemove", this.onMove, true);
    window.addEventListener("mouseup", this.onUp, true);
    return [sp.subscribe("view", this.onView)];
  }

  dispose(): void {
    this.canvas?.removeEventListener("mousedown", this.onDown, true);
    window.removeEventListener("mousemove", this.onMove, true);
    window.removeEventListener("mouseup", this.onUp, true);
    this.pressedView = null;
  }

  private readonly onDown = (ev: MouseEvent) => {
    const view = this.sp?.get("cameraView") as ArrayLike<number> | undefined;
    if (!view || ev.buttons !== 1) return;
    this.downX = ev.clientX;
    this.downY = ev.clientY;
    this.pressedView = Array.from(view);
  };

  private readonly onMove = (ev: MouseEvent) => {
    if (this.pressedView && Math.hypot(ev.clientX - this.downX, ev.clientY - this.downY) > STILL_PX) {
      this.pressedView = null; // a real drag: the camera pans with it
    }
  };

  // capture phase on window: before the plot's own release and click handlers hit-test
  private readonly onUp = () => {
    this.restore();
    this.pressedView = null;
  };

  private readonly onView = () => this.restore();

  /** Put back the view of the press if the camera panned it without the pointer moving. */
  private restore(): void {
    const sp = this.sp;
    const saved = this.pressedView;
    if (!sp || !saved) return;
    const now = sp.get("cameraView") as ArrayLike<number> | undefined;
    if (!now || !translatedOnly(saved, Array.from(now))) return;
    this.undone += 1;
    sp.view(saved, { preventEvent: true });
    this.onUndo(this.undone);
  }
}

/** `b` differs from the 4x4 view matrix `a` in its translation (entries 12 and 13) alone. */
export function translatedOnly(a: readonly number[], b: readonly number[]): boolean {
  if (a.length !== 16 || b.length !== 16) return false;
  let moved = false;
  for (let i = 0; i < 16; i += 1) {
    const same = Math.abs((a[i] as number) - (b[i] as number)) <= 1e-9;
    if (i === 12 || i === 13) moved ||= !same;
    else if (!same) return false;
  }
  return moved;
}
