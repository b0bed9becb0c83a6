// The plugin's settings (schema/plugin.json), read without JupyterLab: unit-tested with vitest.

/** The run list's default refresh interval (ms): panel.ts's POLL_MS, the schema's default. */
export const DEFAULT_REFRESH_MS = 2000;
/** The shortest refresh interval accepted (ms): the schema's minimum. */
export const MIN_REFRESH_MS = 500;

/** `refreshInterval` (ms) from the settings: the default when unset or not a number, never below
 *  MIN_REFRESH_MS. */
export function refreshInterval(value: unknown): number {
  return typeof value === "number" && Number.isFinite(value) ? Math.max(MIN_REFRESH_MS, value) : DEFAULT_REFRESH_MS;
}
