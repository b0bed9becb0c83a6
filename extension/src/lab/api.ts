// REST client of the workbench server extension (<base_url>/workbench/...).
import { URLExt } from "@jupyterlab/coreutils";
import { ServerConnection } from "@jupyterlab/services";

import type { Analysis, RunSummary } from "./model";
import type { SweepRequest } from "./sweep";

/** The reply of POST /workbench/sweeps: the sweep's label and one entry per distinct point. */
export interface SweepLaunched {
  sweep: string;
  runs: { id: string; status: string; parameters: Record<string, unknown> }[];
}

export class WorkbenchAPIError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export function workbenchURL(settings: ServerConnection.ISettings, ...parts: string[]): string {
  return URLExt.join(settings.baseUrl, "workbench", ...parts.map(encodeURIComponent));
}

export async function requestAPI<T>(
  parts: string[],
  init: RequestInit = {},
  settings: ServerConnection.ISettings = ServerConnection.makeSettings(),
): Promise<T> {
  return requestURL<T>(workbenchURL(settings, ...parts), init, settings);
}

/** `requestAPI` for a full URL (one with a query string). */
export async function requestURL<T>(
  url: string,
  init: RequestInit = {},
  settings: ServerConnection.ISettings = ServerConnection.makeSettings(),
): Promise<T> {
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new WorkbenchAPIError(0, `the server did not answer: ${String(error)}`);
  }
  const text = await response.text();
  let data: unknown = text;
  if (text.length > 0) {
    try {
      data = JSON.parse(text);
    } catch {
      // not JSON: keep the text
    }
  }
  if (!response.ok) {
    const message =
      data !== null && typeof data === "object" && "message" in data
        ? String((data as { message: unknown }).message)
        : `${response.status} ${response.statusText}`;
    throw new WorkbenchAPIError(response.status, message);
  }
  return data as T;
}

export const api = {
  analyses: () => requestAPI<Analysis[]>(["analyses"]),
  runs: () => requestAPI<RunSummary[]>(["runs"]),
  run: (id: string) => requestAPI<RunSummary>(["runs", id]),
  launch: (notebook: string, parameters: Record<string, unknown>) =>
    requestAPI<Partial<RunSummary> & { id: string; status: string }>(["runs"], { method: "POST", body: JSON.stringify({ notebook, parameters }) }),
  launchSweep: (request: SweepRequest) =>
    requestAPI<SweepLaunched>(["sweeps"], { method: "POST", body: JSON.stringify(request) }),
  cancel: (id: string) => requestAPI<RunSummary>(["runs", id], { method: "DELETE" }),
  record: (id: string) => requestAPI<Record<string, unknown>>(["runs", id, "record"]),
  reportURL: (id: string) => workbenchURL(ServerConnection.makeSettings(), "runs", id, "report"),
};
