/**
 * The one typed contract between the Python widgets (`workbench/widgets/`) and their
 * front ends, as TypeScript. Its source of truth is `workbench/widgets/contract.json`:
 * `__tests__/contract.test.ts` fails when the names, fields, buffer layouts, defaults or
 * test ids below differ from it (and `tests/test_widgets.py` holds the Python traits to the
 * same file), and the compile-time checks at the bottom fail when a list misses a key of the
 * interface the widgets read. CONTRACT.md's tables are generated from the JSON.
 *
 * Only types, trait-name lists, defaults and pure binary helpers live here (no DOM).
 */

export const CONTRACT_VERSION = 1;

// ---------------------------------------------------------------------------------------------
// Binary traits

/**
 * What `model.get(<Bytes trait>)` may yield: ipywidgets hands binary buffers over as a
 * `DataView`; other hosts (static HTML export, tests) may give an `ArrayBuffer` or a typed
 * array. `null`/`undefined` stand for "nothing yet" (zero bytes).
 */
export type BinaryLike = DataView | ArrayBuffer | ArrayBufferView | null | undefined;

/** True on every platform a notebook runs on; checked once so big-endian hosts still decode. */
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

function bytesOf(x: BinaryLike): { buffer: ArrayBufferLike; byteOffset: number; byteLength: number } {
  if (x === null || x === undefined) {
    return { buffer: new ArrayBuffer(0), byteOffset: 0, byteLength: 0 };
  }
  if (x instanceof ArrayBuffer) {
    return { buffer: x, byteOffset: 0, byteLength: x.byteLength };
  }
  if (ArrayBuffer.isView(x)) {
    return { buffer: x.buffer, byteOffset: x.byteOffset, byteLength: x.byteLength };
  }
  // A SharedArrayBuffer or an ArrayBuffer from another realm (iframe, jsdom) fails instanceof.
  const maybe = x as { byteLength?: unknown; slice?: unknown };
  if (typeof maybe.byteLength === "number" && typeof maybe.slice === "function") {
    const buf = x as unknown as ArrayBuffer;
    return { buffer: buf, byteOffset: 0, byteLength: buf.byteLength };
  }
  throw new TypeError(
    `expected binary data (DataView, ArrayBuffer or typed array), got ${Object.prototype.toString.call(x)}`,
  );
}

function checkLength(what: string, byteLength: number, expectedLength: number | undefined): number {
  if (byteLength % 4 !== 0) {
    throw new Error(`${what}: byte length ${byteLength} is not a multiple of 4`);
  }
  const n = byteLength / 4;
  if (expectedLength !== undefined && n !== expectedLength) {
    throw new Error(
      `${what}: expected ${expectedLength} values (${expectedLength * 4} bytes), got ${n} (${byteLength} bytes)`,
    );
  }
  return n;
}

/**
 * View little-endian float32 bytes as a `Float32Array`.
 *
 * Zero-copy when the data starts on a 4-byte boundary (the usual case); copies when a
 * `DataView`'s `byteOffset` is not 4-aligned (a typed array cannot start there).
 * Throws an `Error` when the byte length is not a multiple of 4 or, with `expectedLength`,
 * when the number of values differs from it.
 */
export function toFloat32(x: BinaryLike, expectedLength?: number): Float32Array {
  if (x instanceof Float32Array) {
    checkLength("float32 data", x.byteLength, expectedLength);
    return x;
  }
  const { buffer, byteOffset, byteLength } = bytesOf(x);
  const n = checkLength("float32 data", byteLength, expectedLength);
  if (LITTLE_ENDIAN && byteOffset % 4 === 0) {
    return new Float32Array(buffer, byteOffset, n);
  }
  const out = new Float32Array(n);
  const dv = new DataView(buffer, byteOffset, byteLength);
  for (let i = 0; i < n; i++) out[i] = dv.getFloat32(4 * i, true);
  return out;
}

/** Same as {@link toFloat32} for little-endian int32 bytes. */
export function toInt32(x: BinaryLike, expectedLength?: number): Int32Array {
  if (x instanceof Int32Array) {
    checkLength("int32 data", x.byteLength, expectedLength);
    return x;
  }
  const { buffer, byteOffset, byteLength } = bytesOf(x);
  const n = checkLength("int32 data", byteLength, expectedLength);
  if (LITTLE_ENDIAN && byteOffset % 4 === 0) {
    return new Int32Array(buffer, byteOffset, n);
  }
  const out = new Int32Array(n);
  const dv = new DataView(buffer, byteOffset, byteLength);
  for (let i = 0; i < n; i++) out[i] = dv.getInt32(4 * i, true);
  return out;
}

// ---------------------------------------------------------------------------------------------
// The model as the widgets use it (a structural subset of anywidget's `AnyModel`, so a tiny
// fake drives the widgets in tests).

export type ModelCallback = (...args: any[]) => void;

export interface WidgetModel<T extends object> {
  get<K extends keyof T>(key: K): T[K];
  set<K extends keyof T>(key: K, value: T[K]): void;
  save_changes(): void;
  send(content: unknown, callbacks?: unknown, buffers?: ArrayBuffer[] | ArrayBufferView[]): void;
  on(eventName: string, callback: ModelCallback): void;
  off(eventName?: string | null, callback?: ModelCallback | null): void;
}

export interface RenderProps<T extends object> {
  model: WidgetModel<T>;
  el: HTMLElement;
}

/** anywidget's AFM `render`: may return a cleanup function. */
export type Render<T extends object> = (props: RenderProps<T>) => void | (() => void);

// ---------------------------------------------------------------------------------------------
// FeatureMap (`workbench.widgets.FeatureMap`, module `feature_map.js`)

export type ColormapName = "viridis" | "coolwarm";

export interface FeatureMapState {
  /** number of points */
  n: number;
  /** float32[2n], interleaved x0,y0,x1,y1,... in [-1, 1] */
  points: BinaryLike;
  /** float32[n] colour column; NaN = missing (drawn grey) */
  values: BinaryLike;
  /** name of the colour column (legend title) */
  color_by: string;
  /** [lo, hi] used to normalise `values` to [0, 1]; lo < hi */
  value_range: [number, number] | number[];
  /** "viridis" (sequential) or "coolwarm" (diverging) */
  colormap: ColormapName | string;
  /** selected point indices (both directions) */
  selection: number[];
  /** indices to emphasise (py->js) */
  highlight: number[];
  /** point size in CSS px (default 3.0) */
  point_size: number;
  /** canvas height in CSS px (default 420) */
  height: number;
  /** shown above the plot */
  title: string;
}

/** js->py: the pointer rests on point `index` (debounced ~80 ms). */
export interface HoverMessage {
  type: "hover";
  index: number;
}

/** py->js: the hover card's content for point `index`. */
export interface CardMessage {
  type: "card";
  index: number;
  label: string;
  value: number | null;
  contexts: string[];
}

export type FeatureMapJsToPy = HoverMessage;
export type FeatureMapPyToJs = CardMessage;

/** Narrow an incoming custom message to a well-formed `card` (extra keys are ignored). */
export function isCardMessage(msg: unknown): msg is CardMessage {
  if (typeof msg !== "object" || msg === null) return false;
  const m = msg as Record<string, unknown>;
  return m.type === "card" && typeof m.index === "number" && Number.isInteger(m.index);
}

// ---------------------------------------------------------------------------------------------
// Neighborhood (`workbench.widgets.Neighborhood`, module `neighborhood.js`)

export interface NeighborhoodNode {
  id: number;
  label: string;
  /** null for the centre */
  cosine: number | null;
  coactivation: number | null;
  value: number | null;
}

export interface NeighborhoodEdge {
  source: number;
  target: number;
  cosine: number;
}

export interface NeighborhoodState {
  center: number;
  nodes: NeighborhoodNode[];
  edges: NeighborhoodEdge[];
  /** js->py: [id] when a node is clicked */
  selection: number[];
  height: number;
  title: string;
}

// ---------------------------------------------------------------------------------------------
// PatchPreview (`workbench.widgets.PatchPreview`, module `patch_preview.js`)

/** `workbench.patches.preview(...).to_dict()` */
export interface PatchPreviewPayload {
  prompts: string[];
  before: string[];
  after: string[];
  before_tokens: string[][];
  after_tokens: string[][];
  /** per prompt, per generated position: whether the token differs */
  changed: boolean[][];
  /** watched feature ids */
  features: number[];
  /** per prompt, per watched feature */
  before_acts: number[][];
  after_acts: number[][];
  metrics_before: Record<string, number>;
  metrics_after: Record<string, number>;
  /** the patch's description; has `kind` */
  patch: { kind?: string; [key: string]: unknown };
  strength: number;
}

export interface PatchPreviewState {
  /** `{}` until the first preview is computed */
  payload: Partial<PatchPreviewPayload>;
  strength: number;
  /** [min, max, step] */
  strength_range: [number, number, number] | number[];
  busy: boolean;
  error: string;
}

// ---------------------------------------------------------------------------------------------
// Names shared with Python: each list equals its entry of workbench/widgets/contract.json
// (checked by __tests__/contract.test.ts).

export const TRAITS = {
  feature_map: [
    "n",
    "points",
    "values",
    "color_by",
    "value_range",
    "colormap",
    "selection",
    "highlight",
    "point_size",
    "height",
    "title",
  ],
  neighborhood: ["center", "nodes", "edges", "selection", "height", "title"],
  patch_preview: ["payload", "strength", "strength_range", "busy", "error"],
} as const satisfies {
  feature_map: readonly (keyof FeatureMapState)[];
  neighborhood: readonly (keyof NeighborhoodState)[];
  patch_preview: readonly (keyof PatchPreviewState)[];
};

/** The fields of the records inside `List[Dict]` / `Dict` traits (the JSON's `records`). */
export const FIELDS = {
  neighborhood_node: ["id", "label", "cosine", "coactivation", "value"],
  neighborhood_edge: ["source", "target", "cosine"],
  patch_preview_payload: [
    "prompts",
    "before",
    "after",
    "before_tokens",
    "after_tokens",
    "changed",
    "features",
    "before_acts",
    "after_acts",
    "metrics_before",
    "metrics_after",
    "patch",
    "strength",
  ],
} as const satisfies {
  neighborhood_node: readonly (keyof NeighborhoodNode)[];
  neighborhood_edge: readonly (keyof NeighborhoodEdge)[];
  patch_preview_payload: readonly (keyof PatchPreviewPayload)[];
};

/** Layout of the `Bytes` traits: dtype and shape (row-major; `"n"` is the `n` trait). */
export const BUFFERS = {
  feature_map: {
    points: { dtype: "float32", shape: ["n", 2] },
    values: { dtype: "float32", shape: ["n"] },
  },
  neighborhood: {},
  patch_preview: {},
} as const satisfies {
  feature_map: { [K in keyof FeatureMapState]?: { dtype: "float32" | "int32"; shape: readonly ("n" | number)[] } };
  neighborhood: object;
  patch_preview: object;
};

/** Custom messages per widget and direction: message type -> its fields. */
export const MESSAGES = {
  feature_map: {
    "js->py": { hover: ["type", "index"] },
    "py->js": { card: ["type", "index", "label", "value", "contexts"] },
  },
  neighborhood: {},
  patch_preview: {},
} as const satisfies {
  feature_map: {
    "js->py": { hover: readonly (keyof HoverMessage)[] };
    "py->js": { card: readonly (keyof CardMessage)[] };
  };
  neighborhood: object;
  patch_preview: object;
};

export const DEFAULTS = {
  feature_map: { point_size: 3.0, height: 420, colormap: "viridis" as ColormapName },
  neighborhood: { height: 360 },
} as const;

export const TEST_IDS = {
  feature_map: "wb-feature-map",
  neighborhood: "wb-neighborhood",
  patch_preview: "wb-patch-preview",
} as const;

/** Debounce delays (ms) the contract asks for. */
export const DEBOUNCE_MS = { hover: 80, strength: 150 } as const;

// ---------------------------------------------------------------------------------------------
// Compile-time checks: `satisfies` above keeps every listed name a key of its interface; these
// make the lists complete, so a key renamed in an interface (or a list) fails `tsc`.

/** Compiles only when `T` is `never` (no key left unlisted). */
type NoneMissing<T extends never> = T;
type Unlisted<T, L extends readonly unknown[]> = Exclude<keyof T, L[number]>;
export type ContractIsComplete = [
  NoneMissing<Unlisted<FeatureMapState, typeof TRAITS.feature_map>>,
  NoneMissing<Unlisted<NeighborhoodState, typeof TRAITS.neighborhood>>,
  NoneMissing<Unlisted<PatchPreviewState, typeof TRAITS.patch_preview>>,
  NoneMissing<Unlisted<NeighborhoodNode, typeof FIELDS.neighborhood_node>>,
  NoneMissing<Unlisted<NeighborhoodEdge, typeof FIELDS.neighborhood_edge>>,
  NoneMissing<Unlisted<PatchPreviewPayload, typeof FIELDS.patch_preview_payload>>,
  NoneMissing<Unlisted<HoverMessage, (typeof MESSAGES.feature_map)["js->py"]["hover"]>>,
  NoneMissing<Unlisted<CardMessage, (typeof MESSAGES.feature_map)["py->js"]["card"]>>,
];
