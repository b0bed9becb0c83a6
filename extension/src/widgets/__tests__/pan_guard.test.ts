// @vitest-environment jsdom
/**
 * PanGuard against a fake camera that pans the way dom-2d-camera does: once per frame while the
 * button is down, by the pointer's travel since the previous frame.
 */
import { describe, expect, it } from "vitest";
import { PanGuard, translatedOnly } from "../feature_map/pan_guard";
import type { Scatterplot } from "../feature_map/scatter";

const IDENTITY = [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1];

/** A camera with dom-2d-camera's per-frame pan, behind the plot calls the guard makes; with
 * `report` false the plot pans silently, as regl-scatterplot does in a frame nothing asked it
 * to draw. */
function fakePlot(canvas: HTMLCanvasElement, report: boolean) {
  let view = [...IDENTITY];
  let pressed = false;
  let mouse = [0, 0];
  let prev = [0, 0];
  const views = new Set<() => void>();
  canvas.addEventListener("mousedown", (e) => (pressed = e.buttons === 1));
  window.addEventListener("mouseup", () => (pressed = false));
  window.addEventListener("mousemove", (e) => (mouse = [e.clientX, e.clientY]));
  const plot = {
    get: (key: string) => (key === "cameraView" ? Float32Array.from(view) : undefined),
    subscribe: (event: string, handler: () => void) => {
      if (event === "view") views.add(handler);
      return handler;
    },
    view: (v: number[]) => {
      view = [...v];
    },
  };
  /** One animation frame: pan by the travel since the last frame while pressed. */
  const frame = () => {
    const [dx, dy] = [mouse[0]! - prev[0]!, mouse[1]! - prev[1]!];
    prev = [...mouse];
    if (pressed && (dx || dy)) {
      view[12] = (view[12] as number) + dx / 100;
      view[13] = (view[13] as number) - dy / 100;
      if (report) for (const h of views) h();
    }
  };
  return { plot: plot as unknown as Scatterplot, frame, view: () => view };
}

const move = (x: number, y: number) =>
  window.dispatchEvent(new MouseEvent("mousemove", { clientX: x, clientY: y, bubbles: true }));
const down = (canvas: HTMLElement, x: number, y: number) =>
  canvas.dispatchEvent(new MouseEvent("mousedown", { clientX: x, clientY: y, buttons: 1, bubbles: true }));
const up = (x: number, y: number) =>
  window.dispatchEvent(new MouseEvent("mouseup", { clientX: x, clientY: y, bubbles: true }));

describe("PanGuard", () => {
  it.each([true, false])("undoes the pan of a press in the frame of the move before it (view event: %s)", (report) => {
    const canvas = document.createElement("canvas");
    document.body.appendChild(canvas);
    const fake = fakePlot(canvas, report);
    // without the guard the camera pans by the whole jump: the bug
    move(0, 0);
    fake.frame();
    move(500, 200);
    down(canvas, 500, 200);
    fake.frame();
    expect(fake.view()[12]).toBeCloseTo(5);
    up(500, 200);
    fake.plot.view([...IDENTITY]);

    const undone: number[] = [];
    const guard = new PanGuard((n) => undone.push(n));
    guard.attach(fake.plot, canvas);
    move(0, 0);
    fake.frame();
    move(500, 200);
    down(canvas, 500, 200);
    fake.frame();
    if (report) expect(fake.view()).toEqual(IDENTITY); // undone as the plot reports it
    up(500, 200); // else undone at the release, before the click hit-tests
    expect(fake.view()).toEqual(IDENTITY);
    expect(undone).toEqual([1]);

    // a real drag still pans: the pointer moves after the press
    down(canvas, 500, 200);
    fake.frame();
    move(540, 200);
    fake.frame();
    expect(fake.view()[12]).toBeCloseTo(0.4);
    up(540, 200);
    expect(undone).toEqual([1]);
    guard.dispose();
    canvas.remove();
  });

  it("tells a pan from a zoom", () => {
    const moved = [...IDENTITY];
    moved[12] = 0.3;
    expect(translatedOnly(IDENTITY, moved)).toBe(true);
    expect(translatedOnly(IDENTITY, IDENTITY)).toBe(false);
    const zoomed = [...moved];
    zoomed[0] = 2;
    expect(translatedOnly(IDENTITY, zoomed)).toBe(false);
    expect(translatedOnly(IDENTITY, [1, 2])).toBe(false);
  });
});
