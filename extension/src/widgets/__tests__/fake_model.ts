import { vi } from "vitest";
import type { ModelCallback, WidgetModel } from "../contract";

/**
 * A tiny stand-in for an anywidget model: get/set (set fires `change:<key>` like Backbone
 * when the value changes), save_changes/send as spies, on/off, and `receive` to deliver a
 * py->js custom message.
 */
export class FakeModel<T extends object> implements WidgetModel<T> {
  private state: T;
  private listeners = new Map<string, Set<ModelCallback>>();
  readonly save_changes = vi.fn();
  readonly send = vi.fn();

  constructor(initial: T) {
    this.state = { ...initial };
  }

  get<K extends keyof T>(key: K): T[K] {
    return this.state[key];
  }

  set<K extends keyof T>(key: K, value: T[K]): void {
    const old = this.state[key];
    this.state[key] = value;
    if (old !== value) this.emit(`change:${String(key)}`);
  }

  on(eventName: string, callback: ModelCallback): void {
    let set = this.listeners.get(eventName);
    if (!set) this.listeners.set(eventName, (set = new Set()));
    set.add(callback);
  }

  off(eventName?: string | null, callback?: ModelCallback | null): void {
    if (!eventName) {
      this.listeners.clear();
      return;
    }
    if (!callback) this.listeners.delete(eventName);
    else this.listeners.get(eventName)?.delete(callback);
  }

  emit(eventName: string, ...args: unknown[]): void {
    for (const cb of [...(this.listeners.get(eventName) ?? [])]) cb(...args);
  }

  receive(content: unknown): void {
    this.emit("msg:custom", content, []);
  }

  listenerCount(): number {
    let n = 0;
    for (const s of this.listeners.values()) n += s.size;
    return n;
  }
}
