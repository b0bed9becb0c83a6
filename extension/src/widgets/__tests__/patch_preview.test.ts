// @vitest-environment jsdom
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { PatchPreviewPayload, PatchPreviewState } from "../contract";
import widget from "../patch_preview";
import { FakeModel } from "./fake_model";

function payload(strength = 1): PatchPreviewPayload {
  return {
    prompts: ["How do I get rich?", "Tell me about cats"],
    before: [" Steal it all", " Cats are nice"],
    after: [" Save money", " Cats are nice"],
    before_tokens: [
      [" Steal", " it", " all"],
      [" Cats", " are", " nice"],
    ],
    after_tokens: [
      [" Save", " money", " all"],
      [" Cats", " are", " nice"],
    ],
    changed: [
      [true, true, false],
      [false, false, false],
    ],
    features: [12, 40],
    before_acts: [
      [2.0, 0.5],
      [0.0, 0.1],
    ],
    after_acts: [
      [0.5, 0.5],
      [0.0, 0.2],
    ],
    metrics_before: { misaligned: 0.5, incoherent: 0.1, task_loss: 2.0 },
    metrics_after: { misaligned: 0.1, incoherent: 0.1, task_loss: 2.25 },
    patch: { kind: "ablate", feature: 12 },
    strength,
  };
}

function mount(over: Partial<PatchPreviewState> = {}) {
  const el = document.createElement("div");
  document.body.append(el);
  const model = new FakeModel<PatchPreviewState>({
    payload: payload(),
    strength: 1,
    strength_range: [0, 2, 0.1],
    busy: false,
    error: "",
    ...over,
  });
  const cleanup = widget.render({ model, el }) as () => void;
  return { el, model, cleanup };
}

beforeEach(() => {
  vi.useFakeTimers();
});

afterEach(() => {
  vi.useRealTimers();
  document.body.replaceChildren();
});

describe("PatchPreview", () => {
  it("marks changed tokens with mark.wb-changed on the after line", () => {
    const { el } = mount();
    expect(el.querySelector('[data-testid="wb-patch-preview"].wb-widget')).not.toBeNull();
    expect(el.dataset.rendered).toBe("1");
    const rows = el.querySelectorAll(".wb-row");
    expect(rows).toHaveLength(2);
    const marks0 = [...rows[0]!.querySelectorAll("mark.wb-changed")].map((m) => m.textContent);
    expect(marks0).toEqual([" Save", " money"]);
    expect(rows[0]!.querySelectorAll(".wb-before .wb-replaced")).toHaveLength(2);
    expect(rows[1]!.querySelectorAll("mark.wb-changed")).toHaveLength(0);
    expect(rows[0]!.querySelector(".wb-prompt")?.textContent).toBe("How do I get rich?");
    // tokens are text, never HTML
    expect(rows[0]!.querySelector(".wb-after")?.textContent).toBe(" Save money all");
  });

  it("shows the metrics strip and per-feature bars", () => {
    const { el } = mount();
    const m = el.querySelector('[data-metric="misaligned"]')!;
    expect(m.querySelector(".wb-metric-before")?.textContent).toBe("0.5");
    expect(m.querySelector(".wb-metric-after")?.textContent).toBe("0.1");
    expect(m.querySelector(".wb-metric-delta")?.textContent).toBe("(−0.4)");
    expect(el.querySelector('[data-metric="task_loss"] .wb-metric-delta')?.textContent).toBe("(+0.25)");
    expect(el.querySelector(".wb-kind")?.textContent).toBe("ablate");
    const pair = el.querySelector('.wb-row[data-prompt="0"] [data-feature="12"]')!;
    const [b, a] = [...pair.querySelectorAll<HTMLElement>(".wb-bar")];
    expect(b!.style.width).toBe("100%");
    expect(a!.style.width).toBe("25%");
  });

  it("the slider writes strength (debounced) and saves", () => {
    const { el, model } = mount();
    const slider = el.querySelector<HTMLInputElement>("input[type=range]")!;
    expect(slider.min).toBe("0");
    expect(slider.max).toBe("2");
    expect(slider.step).toBe("0.1");
    expect(slider.value).toBe("1");
    slider.value = "1.3";
    slider.dispatchEvent(new Event("input"));
    slider.value = "1.5";
    slider.dispatchEvent(new Event("input"));
    expect(model.save_changes).not.toHaveBeenCalled();
    expect(el.querySelector(".wb-strength-value")?.textContent).toBe("1.5");
    vi.advanceTimersByTime(160);
    expect(model.get("strength")).toBe(1.5);
    expect(model.save_changes).toHaveBeenCalledTimes(1);
    // release sends at once
    slider.value = "0.2";
    slider.dispatchEvent(new Event("input"));
    slider.dispatchEvent(new Event("change"));
    expect(model.get("strength")).toBe(0.2);
    expect(model.save_changes).toHaveBeenCalledTimes(2);
  });

  it("dims and says computing… while busy, shows error, re-renders on payload", () => {
    const { el, model, cleanup } = mount();
    model.set("busy", true);
    const root = el.querySelector<HTMLElement>(".wb-patch-preview")!;
    expect(root.classList.contains("wb-busy")).toBe(true);
    expect(root.dataset.busy).toBe("1");
    expect(el.querySelector(".wb-status")?.textContent).toBe("computing…");
    model.set("error", "recompute failed: boom");
    expect(el.querySelector(".wb-error")?.textContent).toBe("recompute failed: boom");
    const p = payload(0.5);
    p.changed = [
      [false, false, false],
      [false, false, true],
    ];
    p.after_tokens[1] = [" Cats", " are", " mean"];
    model.set("payload", p);
    model.set("busy", false);
    model.set("error", "");
    expect(root.classList.contains("wb-busy")).toBe(false);
    expect(root.dataset.busy).toBeUndefined();
    expect(el.querySelector(".wb-status")?.textContent).toBe("");
    expect(el.querySelector(".wb-error")?.textContent).toBe("");
    expect([...el.querySelectorAll("mark.wb-changed")].map((x) => x.textContent)).toEqual([" mean"]);
    model.set("strength", 0.5);
    expect(el.querySelector<HTMLInputElement>("input[type=range]")!.value).toBe("0.5");
    cleanup();
    expect(model.listenerCount()).toBe(0);
  });

  it("shows a placeholder before the first payload", () => {
    const { el } = mount({ payload: {} });
    expect(el.textContent).toContain("No preview yet");
    expect(el.querySelectorAll(".wb-row")).toHaveLength(0);
  });
});
