// @vitest-environment jsdom
import { afterEach, describe, expect, it } from "vitest";
import type { NeighborhoodState } from "../contract";
import widget from "../neighborhood";
import { FakeModel } from "./fake_model";

function state(): NeighborhoodState {
  return {
    center: 10,
    nodes: [
      { id: 10, label: "centre feature", cosine: null, coactivation: null, value: 1.5 },
      { id: 3, label: "three", cosine: 0.2, coactivation: 0.1, value: null },
      { id: 4, label: "four", cosine: -0.9, coactivation: 0.8, value: 0.2 },
      { id: 5, label: "", cosine: 0.5, coactivation: null, value: null },
    ],
    edges: [
      { source: 10, target: 3, cosine: 0.2 },
      { source: 10, target: 4, cosine: -0.9 },
      { source: 10, target: 5, cosine: 0.5 },
      { source: 4, target: 5, cosine: -0.6 },
      { source: 4, target: 999, cosine: 0.9 }, // unknown node: skipped
    ],
    selection: [],
    height: 360,
    title: "Neighbours of #10",
  };
}

function mount(s = state()) {
  const el = document.createElement("div");
  document.body.append(el);
  const model = new FakeModel<NeighborhoodState>(s);
  const cleanup = widget.render({ model, el });
  return { el, model, cleanup: cleanup as () => void };
}

afterEach(() => {
  document.body.replaceChildren();
});

describe("Neighborhood", () => {
  it("renders the root, title, nodes with data-id and the centre flag", () => {
    const { el } = mount();
    const root = el.querySelector<HTMLElement>('[data-testid="wb-neighborhood"]')!;
    expect(root.parentElement).toBe(el);
    expect(root.classList.contains("wb-widget")).toBe(true);
    expect(root.classList.contains("wb-neighborhood")).toBe(true);
    expect(root.dataset.rendered).toBe("1");
    expect(root.dataset.nodes).toBe("4");
    expect(el.querySelector(".wb-title")?.textContent).toBe("Neighbours of #10");
    const ids = [...el.querySelectorAll("[data-id]")].map((n) => n.getAttribute("data-id"));
    expect(ids).toEqual(["10", "4", "5", "3"]); // centre, then by |cosine| descending
    const centre = el.querySelectorAll('[data-center="true"]');
    expect(centre).toHaveLength(1);
    expect(centre[0]?.getAttribute("data-id")).toBe("10");
    expect(el.querySelector('[data-id="4"] title')?.textContent).toContain("four");
    expect(el.querySelector('[data-id="4"] text')?.textContent).toBe("4");
    expect(document.head.querySelectorAll("style#wb-style-neighborhood")).toHaveLength(1);
  });

  it("draws edges by sign and |cosine| and skips unknown endpoints", () => {
    const { el } = mount();
    const edges = [...el.querySelectorAll("line.wb-edge")];
    expect(edges).toHaveLength(4);
    const neg = el.querySelector('line[data-source="10"][data-target="4"]')!;
    const pos = el.querySelector('line[data-source="10"][data-target="3"]')!;
    expect(neg.classList.contains("wb-neg")).toBe(true);
    expect(pos.classList.contains("wb-pos")).toBe(true);
    expect(Number(neg.getAttribute("stroke-width"))).toBeGreaterThan(Number(pos.getAttribute("stroke-width")));
    const r = (id: number) => Number(el.querySelector(`[data-id="${id}"] circle`)!.getAttribute("r"));
    expect(r(4)).toBeGreaterThan(r(3)); // larger coactivation
    expect(r(5)).toBeLessThan(r(3)); // null coactivation: small fixed radius
  });

  it("clicking a node sets selection and saves", () => {
    const { el, model } = mount();
    const node = el.querySelector('[data-id="4"] circle')!;
    node.dispatchEvent(new MouseEvent("click", { bubbles: true }));
    expect(model.get("selection")).toEqual([4]);
    expect(model.save_changes).toHaveBeenCalledTimes(1);
    expect(el.querySelector<HTMLElement>(".wb-neighborhood")!.dataset.selection).toBe("[4]");
    // keyboard: Enter on a focused node
    el.querySelector('[data-id="5"]')!.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", bubbles: true }));
    expect(model.get("selection")).toEqual([5]);
    expect(model.save_changes).toHaveBeenCalledTimes(2);
  });

  it("re-renders on change:center / nodes / edges and cleans up its listeners", () => {
    const { el, model, cleanup } = mount();
    const s = state();
    model.set("nodes", [
      { id: 4, label: "four", cosine: null, coactivation: null, value: null },
      { id: 10, label: "ten", cosine: -0.9, coactivation: null, value: null },
    ]);
    model.set("edges", [{ source: 4, target: 10, cosine: -0.9 }]);
    model.set("center", 4);
    expect(el.querySelector('[data-center="true"]')?.getAttribute("data-id")).toBe("4");
    expect(el.querySelectorAll("[data-id]")).toHaveLength(2);
    expect(el.querySelectorAll("line.wb-edge")).toHaveLength(1);
    model.set("nodes", []);
    expect(el.querySelectorAll("[data-id]")).toHaveLength(0);
    expect(el.textContent).toContain("No neighbourhood");
    expect(s.center).toBe(10);
    cleanup();
    expect(model.listenerCount()).toBe(0);
    expect(el.children).toHaveLength(0);
  });
});
