// @vitest-environment jsdom
/**
 * FeatureMap wiring with regl-scatterplot replaced by a fake (no WebGL in node): data
 * encoding, selection both ways, hover messages and card, click on empty space, cleanup.
 * The real drawing is covered by the browser tests.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { FeatureMapState } from "../contract";
import { FakeModel } from "./fake_model";

type Handler = (payload?: unknown) => void;

interface FakeScatter {
  props: Record<string, unknown>;
  draws: { points: number[][]; options: Record<string, unknown> }[];
  selected: number[];
  hovered: number | undefined;
  drawn: boolean;
  destroyed: boolean;
  handlers: Map<string, Set<Handler>>;
  publish(event: string, payload?: unknown): void;
  select: ReturnType<typeof vi.fn>;
  deselect: ReturnType<typeof vi.fn>;
  set: ReturnType<typeof vi.fn>;
}

const instances: FakeScatter[] = [];

vi.mock("regl-scatterplot", () => {
  const createRenderer = () => ({ isDestroyed: false, destroy() { this.isDestroyed = true; } });
  const createScatterplot = (props: Record<string, unknown>) => {
    const handlers = new Map<string, Set<Handler>>();
    const sp: FakeScatter & Record<string, unknown> = {
      props,
      draws: [],
      selected: [],
      hovered: undefined,
      drawn: false,
      destroyed: false,
      handlers,
      isSupported: true,
      publish(event, payload) {
        for (const h of [...(handlers.get(event.toLowerCase()) ?? [])]) h(payload);
      },
      subscribe(event: string, handler: Handler, times?: number) {
        const key = event.toLowerCase();
        let set = handlers.get(key);
        if (!set) handlers.set(key, (set = new Set()));
        let wrapped: Handler = handler;
        if (times === 1) {
          wrapped = (p) => {
            set!.delete(wrapped);
            handler(p);
          };
        }
        set.add(wrapped);
        return { event: key, handler: wrapped };
      },
      unsubscribe(sub: { event: string; handler: Handler }) {
        handlers.get(sub.event)?.delete(sub.handler);
      },
      draw(points: number[][], options: Record<string, unknown>) {
        // copy: the widget reuses its rows between draws
        sp.draws.push({ points: points.map((r) => [...r]), options });
        sp.drawn = true;
        if (Array.isArray(options.select)) sp.selected = [...(options.select as number[])];
        return Promise.resolve();
      },
      redraw() {},
      select: vi.fn((idx: number[], opts: { preventEvent?: boolean } = {}) => {
        sp.selected = [...idx];
        if (!opts.preventEvent) sp.publish("select", { points: [...idx] });
      }),
      deselect: vi.fn((opts: { preventEvent?: boolean } = {}) => {
        sp.selected = [];
        if (!opts.preventEvent) sp.publish("deselect");
      }),
      set: vi.fn(() => Promise.resolve()),
      get(key: string) {
        switch (key) {
          case "isPointsDrawn":
            return sp.drawn;
          case "selectedPoints":
            return sp.selected;
          case "hoveredPoint":
            return sp.hovered;
          case "spatialIndex":
            return new ArrayBuffer(8);
          case "cameraView":
            return new Float32Array([1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]);
          default:
            return undefined;
        }
      },
      getScreenPosition: () => [10, 10],
      destroy() {
        sp.destroyed = true;
      },
    };
    instances.push(sp);
    return sp;
  };
  return { default: createScatterplot, createRenderer };
});

const { default: widget } = await import("../feature_map");

function bytes(a: number[]): DataView {
  return new DataView(new Float32Array(a).buffer);
}

function mount(over: Partial<FeatureMapState> = {}) {
  const el = document.createElement("div");
  document.body.append(el);
  const model = new FakeModel<FeatureMapState>({
    n: 3,
    points: bytes([-0.5, -0.5, 0, 0, 0.5, 0.5]),
    values: bytes([0, NaN, 10]),
    color_by: "density",
    value_range: [0, 10],
    colormap: "viridis",
    selection: [],
    highlight: [],
    point_size: 3,
    height: 420,
    title: "Features",
    ...over,
  });
  const cleanup = widget.render({ model, el }) as () => void;
  const sp = instances[instances.length - 1]!;
  return { el, model, cleanup, sp };
}

const flush = async () => {
  for (let i = 0; i < 5; i++) await Promise.resolve();
};

beforeEach(() => {
  vi.useFakeTimers();
  instances.length = 0;
});

afterEach(() => {
  vi.useRealTimers();
  document.body.replaceChildren();
});

describe("FeatureMap (regl-scatterplot faked)", () => {
  it("draws deinterleaved points with colour bins (NaN -> missing bin) and categorical types", async () => {
    const { el, sp } = mount({ highlight: [2] });
    await flush();
    const root = el.querySelector<HTMLElement>('[data-testid="wb-feature-map"]')!;
    expect(root.classList.contains("wb-widget")).toBe(true);
    expect(sp.props.colorBy).toBe("valueA");
    expect((sp.props.pointColor as unknown[]).length).toBe(257);
    const d = sp.draws[0]!;
    // rows [x, y, colour bin (256 = missing), highlight]
    expect(d.points).toEqual([
      [-0.5, -0.5, 0, 0],
      [0, 0, 256, 0],
      [0.5, 0.5, 255, 1],
    ]);
    expect(d.options.zDataType).toBe("categorical");
    expect(d.options.wDataType).toBe("categorical");
    expect(el.dataset.points).toBe("3");
    expect(el.dataset.rendered).toBeUndefined();
    sp.publish("draw", {});
    expect(el.dataset.rendered).toBe("1");
    expect(root.dataset.rendered).toBe("1");
    expect(root.dataset.points).toBe("3");
    expect(Number(el.dataset.firstDrawMs)).toBeGreaterThanOrEqual(0);
    expect(el.querySelector(".wb-title")?.textContent).toBe("Features");
    expect(el.querySelector(".wb-legend-title")?.textContent).toBe("density");
    expect(el.querySelector(".wb-legend-hi")?.textContent).toBe("10");
    expect(el.querySelector<HTMLElement>(".wb-legend-missing")?.hidden).toBe(false);
  });

  it("writes selection from select/deselect events and applies Python's selection", async () => {
    const { el, model, sp } = mount();
    await flush();
    sp.publish("select", { points: [2, 0, 2] });
    expect(model.get("selection")).toEqual([0, 2]);
    expect(el.dataset.selection).toBe("[0,2]");
    expect(el.dataset.selectionCount).toBe("2");
    expect(model.save_changes).toHaveBeenCalledTimes(1);
    sp.publish("deselect");
    expect(model.get("selection")).toEqual([]);
    expect(model.save_changes).toHaveBeenCalledTimes(2);
    model.set("selection", [1]);
    expect(sp.select).toHaveBeenLastCalledWith([1], { preventEvent: true });
    model.set("selection", []);
    expect(sp.deselect).toHaveBeenLastCalledWith({ preventEvent: true });
    expect(model.save_changes).toHaveBeenCalledTimes(2);
  });

  it("redraws on values changes reusing the spatial index", async () => {
    const { model, sp } = mount();
    await flush();
    model.set("values", bytes([10, 5, 0]));
    await flush();
    expect(sp.draws).toHaveLength(2);
    expect(sp.draws[1]!.options.spatialIndex).toBeInstanceOf(ArrayBuffer);
    expect(sp.draws[1]!.points.map((r) => r[2])).toEqual([255, 128, 0]);
    model.set("points", bytes([0, 0, 1, 1, -1, -1]));
    await flush();
    expect(sp.draws[2]!.options.spatialIndex).toBeUndefined();
    expect(sp.draws[2]!.points.map((r) => r[0])).toEqual([0, 1, -1]);
    model.set("highlight", [1]);
    await flush();
    expect(sp.draws[3]!.options.spatialIndex).toBeInstanceOf(ArrayBuffer);
    expect(sp.draws[3]!.points.map((r) => r[3])).toEqual([0, 1, 0]);
    // unreadable bytes: reported, and the positions change is still applied once readable
    model.set("points", new DataView(new ArrayBuffer(6)));
    await flush();
    expect(sp.draws).toHaveLength(4);
    expect(model.get("points")).toBeInstanceOf(DataView);
    model.set("points", bytes([0.1, 0.1, 0.2, 0.2, 0.3, 0.3]));
    await flush();
    expect(sp.draws[4]!.options.spatialIndex).toBeUndefined();
  });

  it("hover: shows the card, sends a debounced hover message, fills the card from Python", async () => {
    const { el, model, sp } = mount();
    await flush();
    sp.publish("pointOver", 2);
    const card = el.querySelector<HTMLElement>(".wb-card")!;
    expect(card.hidden).toBe(false);
    expect(card.querySelector(".wb-card-index")?.textContent).toBe("#2");
    expect(card.querySelector(".wb-card-value")?.textContent).toBe("density: 10");
    expect(model.send).not.toHaveBeenCalled();
    vi.advanceTimersByTime(100);
    expect(model.send).toHaveBeenCalledWith({ type: "hover", index: 2 });
    model.receive({ type: "card", index: 2, label: "cats", value: 9.5, contexts: ["a", "b", "c", "d", "e", "f"] });
    expect(card.querySelector(".wb-card-label")?.textContent).toBe("cats");
    expect(card.querySelector(".wb-card-value")?.textContent).toBe("density: 9.5");
    expect(card.querySelectorAll(".wb-card-contexts li")).toHaveLength(5);
    sp.publish("pointOut", 2);
    expect(card.hidden).toBe(true);
    sp.publish("pointOver", 1);
    sp.publish("pointOut", 1);
    vi.advanceTimersByTime(100);
    expect(model.send).toHaveBeenCalledTimes(1); // left before the debounce ran
  });

  it("a click on empty space clears the selection; on a point it selects it", async () => {
    const { el, model, sp } = mount({ selection: [0] });
    await flush();
    const canvas = el.querySelector("canvas")!;
    canvas.getBoundingClientRect = () => ({ left: 0, top: 0, width: 400, height: 400, right: 400, bottom: 400, x: 0, y: 0, toJSON() {} });
    const click = (x: number, y: number) => {
      canvas.dispatchEvent(new MouseEvent("mousedown", { clientX: x, clientY: y, bubbles: true }));
      canvas.dispatchEvent(new MouseEvent("click", { clientX: x, clientY: y, bubbles: true }));
    };
    click(10, 390); // far from every point
    expect(sp.deselect).toHaveBeenCalled();
    expect(model.get("selection")).toEqual([]);
    click(300, 100); // data (0.5, 0.5) -> point 2
    expect(model.get("selection")).toEqual([2]);
  });

  it("cleanup destroys the plot and drops every listener", async () => {
    const { el, model, sp, cleanup } = mount();
    await flush();
    cleanup();
    expect(sp.destroyed).toBe(true);
    expect(el.children).toHaveLength(0);
    expect(model.listenerCount()).toBe(0);
  });

  it("reports inconsistent data instead of throwing", async () => {
    const { el, sp } = mount({ n: 5, values: bytes([1]) });
    await flush();
    expect(sp.draws).toHaveLength(1);
    expect(el.querySelector(".wb-error")?.textContent).toMatch(/n = 5 but points holds 3 points/);
    expect(el.querySelector(".wb-error")?.textContent).toMatch(/values holds 1 entries/);
  });
});
