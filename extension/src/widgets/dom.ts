/** Small DOM helpers shared by the widgets (no framework). */

export const SVG_NS = "http://www.w3.org/2000/svg";

type Attrs = Record<string, string | number | boolean | null | undefined>;

function setAttrs(node: Element, attrs: Attrs): void {
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    node.setAttribute(k, v === true ? "" : String(v));
  }
}

/** `h("div", {class: "wb-x"}, "text", child)`: text children become text nodes (never HTML). */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: (Node | string | null | undefined | false)[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  setAttrs(node, attrs);
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    node.append(typeof c === "string" ? document.createTextNode(c) : c);
  }
  return node;
}

export function s<K extends keyof SVGElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: (Node | string | null | undefined | false)[]
): SVGElementTagNameMap[K] {
  const node = document.createElementNS(SVG_NS, tag);
  setAttrs(node, attrs);
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    node.append(typeof c === "string" ? document.createTextNode(c) : c);
  }
  return node;
}

/**
 * Add the module's `<style>` once: to the shadow root `el` lives in, else to the document's
 * head (a detached `el` counts as the main document, where JupyterLab shows outputs).
 */
export function ensureStyle(el: HTMLElement, id: string, css: string): void {
  const root = el.getRootNode();
  const isShadow = typeof ShadowRoot !== "undefined" && root instanceof ShadowRoot;
  const host: ParentNode = isShadow ? (root as ShadowRoot) : document.head;
  const doc: Document | ShadowRoot = isShadow ? (root as ShadowRoot) : document;
  if (doc.querySelector(`style#${id}`)) return;
  const style = document.createElement("style");
  style.id = id;
  style.textContent = css;
  host.appendChild(style);
}

export interface Debounced<A extends unknown[]> {
  (...args: A): void;
  cancel(): void;
  /** Run a pending call now (no-op when none is pending). */
  flush(): void;
}

export function debounce<A extends unknown[]>(fn: (...args: A) => void, ms: number): Debounced<A> {
  let timer: ReturnType<typeof setTimeout> | null = null;
  let pending: A | null = null;
  const run = () => {
    timer = null;
    const args = pending;
    pending = null;
    if (args) fn(...args);
  };
  const d = ((...args: A) => {
    pending = args;
    if (timer !== null) clearTimeout(timer);
    timer = setTimeout(run, ms);
  }) as Debounced<A>;
  d.cancel = () => {
    if (timer !== null) clearTimeout(timer);
    timer = null;
    pending = null;
  };
  d.flush = () => {
    if (timer !== null) {
      clearTimeout(timer);
      run();
    }
  };
  return d;
}

/**
 * The widget's root element, appended inside anywidget's `el`: classes `wb-widget wb-<name>`
 * and `data-testid="wb-<name>"` (a child, so `[view] [data-testid=...]` locators find it and
 * the host's element is left alone).
 */
export function createRoot(el: HTMLElement, name: string): HTMLDivElement {
  const root = document.createElement("div");
  root.className = `wb-widget wb-${name}`;
  root.dataset.testid = `wb-${name}`;
  el.append(root);
  return root;
}

/**
 * Set (or, with `undefined`, remove) a `data-*` flag for browser tests on the root and,
 * mirrored, on anywidget's `el`.
 */
export function setFlag(root: HTMLElement, el: HTMLElement, key: string, value: string | undefined): void {
  for (const node of root === el ? [root] : [root, el]) {
    if (value === undefined) delete node.dataset[key];
    else node.dataset[key] = value;
  }
}

/** CSS shared by every widget module (each module injects it inside its own style). */
export const BASE_CSS = `
.wb-widget {
  font-family: var(--jp-ui-font-family, sans-serif);
  font-size: var(--jp-ui-font-size1, 13px);
  color: var(--jp-ui-font-color1, #222);
  background: var(--jp-layout-color1, #fff);
  box-sizing: border-box;
}
.wb-widget *, .wb-widget *::before, .wb-widget *::after { box-sizing: border-box; }
.wb-widget .wb-title {
  font-weight: 600;
  font-size: var(--jp-ui-font-size2, 15px);
  margin: 0 0 6px 0;
  min-height: 0;
}
.wb-widget .wb-title:empty { display: none; }
.wb-widget .wb-muted { color: var(--jp-ui-font-color2, #666); }
.wb-widget .wb-error {
  color: var(--jp-error-color1, #d32f2f);
  border: 1px solid var(--jp-error-color1, #d32f2f);
  background: var(--jp-error-color3, rgba(211, 47, 47, 0.08));
  border-radius: 3px;
  padding: 4px 8px;
  margin: 4px 0;
  white-space: pre-wrap;
}
.wb-widget .wb-error:empty { display: none; }
`;
