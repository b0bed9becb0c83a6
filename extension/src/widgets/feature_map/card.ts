/**
 * The hover card: while the pointer rests on a point, a card shows `#i`, the colour value and
 * (once Python answers the debounced `hover` message with a `card`) the feature's label and
 * top-activating contexts. Without a kernel no answer comes, and the card keeps `#i` and the
 * value read from `values`.
 */

import { type CardMessage, DEBOUNCE_MS, type FeatureMapState, type WidgetModel, isCardMessage } from "../contract";
import { debounce, h } from "../dom";
import { formatNumber } from "../selection";
import type { Scatterplot } from "./scatter";

const MAX_CONTEXTS = 5;
/** Cards kept from Python's answers (oldest dropped first). */
const MAX_CACHED_CARDS = 512;

export class HoverCard {
  /** `.wb-card`, a child of the plot. */
  readonly el: HTMLElement;
  private readonly index = h("span", { class: "wb-card-index" });
  private readonly label = h("span", { class: "wb-card-label" });
  private readonly value = h("div", { class: "wb-card-value" });
  private readonly contexts = h("ol", { class: "wb-card-contexts" });
  private readonly cards = new Map<number, CardMessage>();
  private hovered = -1;
  private destroyed = false;
  private sp: Scatterplot | null = null;
  private plot: HTMLElement | null = null;
  private readonly sendHover = debounce((i: number) => {
    if (!this.destroyed && i === this.hovered) this.model.send({ type: "hover", index: i });
  }, DEBOUNCE_MS.hover);
  private readonly onMessage = (msg: unknown) => {
    if (!isCardMessage(msg)) return;
    this.cards.set(msg.index, msg);
    if (this.cards.size > MAX_CACHED_CARDS) this.cards.delete(this.cards.keys().next().value as number);
    if (msg.index === this.hovered && !this.el.hidden) this.show(msg.index);
  };

  constructor(
    private readonly model: WidgetModel<FeatureMapState>,
    /** The colour column as last drawn (the card's value without Python's answer). */
    private readonly values: () => Float32Array,
  ) {
    this.el = h(
      "div",
      { class: "wb-card", hidden: true, role: "tooltip" },
      h("div", { class: "wb-card-head" }, this.index, this.label),
      this.value,
      this.contexts,
    );
  }

  /** Follow the plot's hover events and Python's card messages; returns the subscriptions. */
  attach(sp: Scatterplot, plot: HTMLElement): unknown[] {
    this.sp = sp;
    this.plot = plot;
    this.model.on("msg:custom", this.onMessage);
    return [
      sp.subscribe("pointOver", (i) => {
        this.hovered = i;
        this.show(i);
        this.sendHover(i);
      }),
      sp.subscribe("pointOut", () => {
        this.hovered = -1;
        this.sendHover.cancel();
        this.el.hidden = true;
      }),
      sp.subscribe("view", () => {
        if (this.hovered >= 0 && !this.el.hidden) this.place(this.hovered);
      }),
    ];
  }

  /** Stop sending and listening (the plot's subscriptions are dropped by its owner). */
  dispose(): void {
    this.destroyed = true;
    this.sendHover.cancel();
    this.model.off("msg:custom", this.onMessage);
  }

  private fill(i: number): void {
    const c = this.cards.get(i);
    const values = this.values();
    this.index.textContent = `#${i}`;
    this.label.textContent = c?.label ?? "";
    const v = c && typeof c.value === "number" ? c.value : values.length > i ? (values[i] as number) : null;
    const name = this.model.get("color_by") ?? "";
    this.value.textContent = v === null ? "" : `${name ? `${name}: ` : ""}${formatNumber(v)}`;
    this.contexts.replaceChildren(...(c?.contexts ?? []).slice(0, MAX_CONTEXTS).map((t) => h("li", {}, String(t))));
  }

  /** Next to the point, flipped to stay inside the plot. */
  private place(i: number): void {
    if (!this.sp || !this.plot) return;
    let pos: [number, number] | undefined;
    try {
      pos = this.sp.getScreenPosition(i);
    } catch {
      pos = undefined;
    }
    if (!pos) return;
    const w = this.plot.clientWidth;
    const hgt = this.plot.clientHeight;
    const cw = this.el.offsetWidth;
    const ch = this.el.offsetHeight;
    let left = pos[0] + 12;
    let top = pos[1] + 12;
    if (left + cw > w) left = Math.max(0, pos[0] - 12 - cw);
    if (top + ch > hgt) top = Math.max(0, pos[1] - 12 - ch);
    this.el.style.left = `${left}px`;
    this.el.style.top = `${top}px`;
  }

  private show(i: number): void {
    this.fill(i);
    this.el.hidden = false;
    this.place(i);
  }
}
