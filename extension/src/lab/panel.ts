// The left-side Workbench panel: analyses, a parameter form (one run, or a sweep over several
// values per parameter; a parameter with declared choices is a drop-down, one with a declared
// range is checked as typed), Launch, and the run list (Cancel, report, record).
import type { Message } from "@lumino/messaging";
import { Panel, Widget } from "@lumino/widgets";

import { api } from "./api";
import { h, setChildren } from "./dom";
import {
  type Analysis,
  type FieldDescriptor,
  type RunAction,
  type RunListState,
  type RunSummary,
  allowedText,
  coerceValue,
  collectParameters,
  failureLine,
  fieldsFor,
  initialRunState,
  isActive,
  notebookName,
  progressFraction,
  reduceRuns,
  statusLabel,
} from "./model";
import { collectSweep, sweepRequest, sweepSummary, valuesHint, valuesText } from "./sweep";

export const POLL_MS = 2000;

export interface PanelOptions {
  openReport: (run: RunSummary) => void;
  openRecord: (run: RunSummary) => void;
}

export class WorkbenchPanel extends Panel {
  private readonly analysesBox = new Widget();
  private readonly formBox = new Widget();
  private readonly runsBox = new Widget();
  private analyses: Analysis[] = [];
  private selected: string | null = null;
  private fields: FieldDescriptor[] = [];
  /** the form's current raw values (kept across re-renders) */
  private values: Record<string, string | boolean> = {};
  /** sweep mode: each parameter's field holds a list of values */
  private sweeping = false;
  /** the values fields' current text in sweep mode (kept across re-renders) */
  private sweepTexts: Record<string, string> = {};
  private runState: RunListState = initialRunState;
  private timer: ReturnType<typeof setInterval> | null = null;
  private polling = false;

  constructor(private readonly options: PanelOptions) {
    super();
    this.id = "workbench-panel";
    this.addClass("jp-wb-panel");
    this.title.caption = "Workbench";
    for (const [w, cls] of [
      [this.analysesBox, "jp-wb-analyses"],
      [this.formBox, "jp-wb-form"],
      [this.runsBox, "jp-wb-runs"],
    ] as const) {
      w.addClass("jp-wb-section");
      w.addClass(cls);
      this.addWidget(w);
    }
    this.renderAnalyses();
    this.renderForm();
    this.renderRuns();
    void this.loadAnalyses();
    void this.poll();
    this.setPollInterval(POLL_MS);
  }

  /** Poll every `ms` while the panel is shown (and at once when it is shown again); the
   *  `refreshInterval` setting. */
  setPollInterval(ms: number): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = setInterval(() => {
      if (this.isVisible) void this.poll();
    }, ms);
  }

  protected override onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    void this.poll();
  }

  override dispose(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    super.dispose();
  }

  // -- analyses -------------------------------------------------------------------------------

  async loadAnalyses(): Promise<void> {
    try {
      this.analyses = await api.analyses();
      this.renderAnalyses();
    } catch (error) {
      this.renderAnalyses((error as Error).message);
    }
  }

  private renderAnalyses(error?: string): void {
    const refresh = h("button", { class: "jp-wb-button jp-wb-link", title: "Reload the analyses" }, "↻");
    refresh.onclick = () => void this.loadAnalyses();
    const list = h("ul", { class: "jp-wb-list", role: "listbox" });
    for (const a of this.analyses) {
      const item = h(
        "li",
        {
          class: `jp-wb-analysis${a.name === this.selected ? " jp-mod-selected" : ""}`,
          role: "option",
          "data-name": a.name,
          title: a.error ?? a.path,
          tabindex: "0",
        },
        h("span", { class: "jp-wb-analysis-title" }, a.title || a.name),
        h("span", { class: "jp-wb-muted" }, ` ${a.name}`),
      );
      item.onclick = () => this.select(a.name);
      item.onkeydown = (e) => {
        if (e.key === "Enter" || e.key === " ") this.select(a.name);
      };
      list.append(item);
    }
    setChildren(this.analysesBox.node, 
      h("h2", { class: "jp-wb-heading" }, "Analyses ", refresh),
      error ? h("p", { class: "jp-wb-error" }, error) : null,
      this.analyses.length === 0 && !error ? h("p", { class: "jp-wb-muted" }, "No analysis notebooks.") : null,
      list,
    );
  }

  select(name: string): void {
    this.selected = name;
    const a = this.analyses.find((x) => x.name === name);
    this.fields = a && !a.error ? fieldsFor(a.parameters) : [];
    this.values = {};
    this.sweepTexts = {};
    this.renderAnalyses();
    this.renderForm();
  }

  // -- form -----------------------------------------------------------------------------------

  private renderForm(message?: { text: string; error: boolean }): void {
    const a = this.analyses.find((x) => x.name === this.selected);
    if (!a) {
      setChildren(this.formBox.node, h("p", { class: "jp-wb-muted" }, "Select an analysis to launch it."));
      return;
    }
    const form = h("form", { class: "jp-wb-params", "data-analysis": a.name });
    form.noValidate = true; // the panel checks values itself, naming what the notebook allows
    const toggle = h("input", { type: "checkbox", id: `jp-wb-sweep-toggle-${a.name}`, "data-wb": "sweep-toggle" });
    toggle.checked = this.sweeping;
    toggle.onchange = () => this.setSweeping(toggle.checked);
    if (this.fields.length > 0) {
      form.append(
        h(
          "div",
          { class: "jp-wb-field jp-wb-field-checkbox jp-wb-sweep-toggle" },
          h("label", { for: toggle.id, title: "Launch one run per combination of the values given" }, "Sweep: several values per parameter"),
          toggle,
        ),
      );
    }
    if (this.sweeping && this.fields.length > 0) {
      this.renderSweepFields(a, form, message);
      return;
    }
    for (const f of this.fields) form.append(this.renderField(a, f));
    if (this.fields.length === 0) form.append(h("p", { class: "jp-wb-muted" }, "No parameters."));
    const launch = h("button", { type: "submit", class: "jp-wb-button jp-mod-accept", "data-wb": "launch" }, "Launch");
    form.append(h("div", { class: "jp-wb-actions" }, launch));
    if (message) {
      form.append(
        h("p", { class: message.error ? "jp-wb-error" : "jp-wb-muted", "data-wb": "launch-message" }, message.text),
      );
    }
    form.onsubmit = (e) => {
      e.preventDefault();
      void this.launch(a, form, launch);
    };
    setChildren(this.formBox.node, 
      h("h2", { class: "jp-wb-heading" }, a.title || a.name),
      a.error ? h("p", { class: "jp-wb-error" }, a.error) : form,
    );
  }

  /** One parameter's field: a drop-down for declared choices, a checkbox, a number / text
   *  input or JSON text; a value outside the declared range is named under it as typed. */
  private renderField(a: Analysis, f: FieldDescriptor): HTMLElement {
    const id = `jp-wb-param-${a.name}-${f.name}`;
    const current = this.values[f.name] ?? f.initial;
    const problem = h("div", { class: "jp-wb-error jp-wb-field-error", "data-wb": "field-error" });
    const check = (raw: string | boolean) => {
      const c = coerceValue(f, raw);
      problem.textContent = c.ok ? "" : c.error;
      problem.hidden = c.ok;
    };
    let input: HTMLInputElement | HTMLTextAreaElement | HTMLSelectElement;
    if (f.choices) {
      const select = h("select", { id, name: f.name });
      for (const c of f.choices) select.append(h("option", { value: c.text }, c.label));
      select.value = String(current);
      select.onchange = () => (this.values[f.name] = select.value);
      input = select;
    } else if (f.kind === "checkbox") {
      const box = h("input", { type: "checkbox", id, name: f.name });
      box.checked = current === true;
      box.onchange = () => (this.values[f.name] = box.checked);
      input = box;
    } else {
      const b = f.bounds;
      input =
        f.kind === "json"
          ? h("textarea", { id, name: f.name, rows: "2", spellcheck: "false", class: "jp-wb-mono" })
          : h("input", {
              type: f.kind === "number" ? "number" : "text",
              id,
              name: f.name,
              step: f.step,
              min: b && b.minimum !== null && !b.exclusiveMinimum ? String(b.minimum) : undefined,
              max: b && b.maximum !== null && !b.exclusiveMaximum ? String(b.maximum) : undefined,
            });
      input.value = String(current);
      const el = input;
      el.oninput = () => {
        this.values[f.name] = el.value;
        check(el.value);
      };
    }
    input.classList.add("jp-wb-input");
    check(current);
    const allowed = f.bounds ? allowedText(f) : "";
    const help = [f.help, allowed ? `(${allowed})` : ""].filter(Boolean).join(" ");
    return h(
      "div",
      { class: `jp-wb-field jp-wb-field-${f.choices ? "select" : f.kind}`, "data-param": f.name },
      h("label", { for: id }, f.name, h("span", { class: "jp-wb-type" }, ` ${f.type}`)),
      input,
      help ? h("div", { class: "jp-wb-help" }, help) : null,
      problem,
    );
  }

  private setSweeping(on: boolean): void {
    this.sweeping = on;
    if (on) {
      // start each values field from the single value typed so far
      for (const f of this.fields) {
        if (this.sweepTexts[f.name] === undefined) this.sweepTexts[f.name] = valuesText(f, this.values[f.name] ?? f.initial);
      }
    }
    this.renderForm();
  }

  /** Sweep mode: a values field per parameter, the grid size shown live, "Launch sweep". */
  private renderSweepFields(a: Analysis, form: HTMLFormElement, message?: { text: string; error: boolean }): void {
    const size = h("p", { class: "jp-wb-sweep-size", "data-wb": "sweep-size", "aria-live": "polite" });
    const launch = h("button", { type: "submit", class: "jp-wb-button jp-mod-accept", "data-wb": "launch-sweep" }, "Launch sweep");
    const update = () => {
      const c = collectSweep(this.fields, this.sweepTexts);
      size.textContent = sweepSummary(c);
      size.classList.toggle("jp-wb-error", !c.ok);
      launch.disabled = !c.ok;
    };
    for (const f of this.fields) {
      const id = `jp-wb-sweep-${a.name}-${f.name}`;
      const hint = valuesHint(f);
      const input =
        f.kind === "json"
          ? h("textarea", { id, name: f.name, rows: "2", spellcheck: "false", class: "jp-wb-mono", placeholder: hint })
          : h("input", { type: "text", id, name: f.name, spellcheck: "false", placeholder: hint });
      input.classList.add("jp-wb-input");
      input.setAttribute("data-wb", "sweep-values");
      input.value = this.sweepTexts[f.name] ?? valuesText(f, this.values[f.name] ?? f.initial);
      input.oninput = () => {
        this.sweepTexts[f.name] = input.value;
        update();
      };
      form.append(
        h(
          "div",
          { class: "jp-wb-field jp-wb-field-values", "data-param": f.name },
          h("label", { for: id }, f.name, h("span", { class: "jp-wb-type" }, ` ${f.type} values`)),
          input,
          h("div", { class: "jp-wb-help" }, f.help ? `${f.help} — ${hint}` : hint),
        ),
      );
    }
    form.append(size, h("div", { class: "jp-wb-actions" }, launch));
    if (message) {
      form.append(
        h("p", { class: message.error ? "jp-wb-error" : "jp-wb-muted", "data-wb": "launch-message" }, message.text),
      );
    }
    update();
    form.onsubmit = (e) => {
      e.preventDefault();
      void this.launchSweep(a, launch);
    };
    setChildren(this.formBox.node, h("h2", { class: "jp-wb-heading" }, a.title || a.name), form);
  }

  private async launchSweep(a: Analysis, button: HTMLButtonElement): Promise<void> {
    const c = collectSweep(this.fields, this.sweepTexts);
    if (!c.ok) {
      this.renderForm({ text: c.errors.join("; "), error: true });
      return;
    }
    button.disabled = true;
    try {
      const out = await api.launchSweep(sweepRequest(a.name, c));
      const at = Date.now();
      for (const r of out.runs) {
        this.dispatch({ type: "launched", at, run: { notebook: a.path, ...r } });
      }
      const count = (status: string) => out.runs.filter((r) => r.status === status).length;
      const notes = [
        count("queued") ? `${count("queued")} queued` : "",
        count("complete") ? `${count("complete")} already complete` : "",
      ].filter(Boolean);
      const n = out.runs.length;
      this.renderForm({
        text: `Sweep ${out.sweep.slice(0, 10)}: ${n} run${n === 1 ? "" : "s"} launched${notes.length ? ` (${notes.join(", ")})` : ""}.`,
        error: false,
      });
      void this.poll();
    } catch (error) {
      this.renderForm({ text: (error as Error).message, error: true });
    }
  }

  private async launch(a: Analysis, form: HTMLFormElement, button: HTMLButtonElement): Promise<void> {
    const raws: Record<string, string | boolean> = {};
    for (const f of this.fields) {
      const el = form.elements.namedItem(f.name) as HTMLInputElement | HTMLTextAreaElement | HTMLSelectElement | null;
      if (!el) continue;
      raws[f.name] = f.kind === "checkbox" && !f.choices ? (el as HTMLInputElement).checked : el.value;
      this.values[f.name] = raws[f.name]!;
    }
    const collected = collectParameters(this.fields, raws);
    if (!collected.ok) {
      this.renderForm({ text: collected.errors.join("; "), error: true });
      return;
    }
    button.disabled = true;
    try {
      const out = await api.launch(a.name, collected.parameters);
      this.dispatch({
        type: "launched",
        at: Date.now(),
        run: { notebook: a.path, parameters: collected.parameters, ...out },
      });
      const what = out.status === "complete" ? "already complete" : out.status === "queued" ? "queued" : "launched";
      this.renderForm({ text: `Run ${out.id.slice(0, 10)} ${what}.`, error: false });
      void this.poll();
    } catch (error) {
      this.renderForm({ text: (error as Error).message, error: true });
    }
  }

  // -- runs -----------------------------------------------------------------------------------

  private dispatch(action: RunAction): void {
    this.runState = reduceRuns(this.runState, action);
    this.renderRuns();
  }

  async poll(): Promise<void> {
    if (this.polling || this.isDisposed) return;
    this.polling = true;
    try {
      this.dispatch({ type: "polled", runs: await api.runs(), at: Date.now() });
    } catch (error) {
      this.dispatch({ type: "error", message: (error as Error).message });
    } finally {
      this.polling = false;
    }
  }

  private async cancel(run: RunSummary, button: HTMLButtonElement): Promise<void> {
    button.disabled = true;
    try {
      this.dispatch({ type: "updated", run: await api.cancel(run.id) });
    } catch (error) {
      this.dispatch({ type: "error", message: (error as Error).message });
    }
  }

  private renderRuns(): void {
    const { runs, error } = this.runState;
    const list = h("ul", { class: "jp-wb-list" });
    for (const run of runs) {
      const label = statusLabel(run);
      const failure = failureLine(run);
      const frac = progressFraction(run);
      const buttons = h("div", { class: "jp-wb-actions" });
      if (run.status === "complete" || run.report) {
        const b = h("button", { class: "jp-wb-button", "data-wb": "open-report" }, "Open report");
        b.onclick = () => this.options.openReport(run);
        buttons.append(b);
      }
      if (!isActive(run)) {
        const b = h("button", { class: "jp-wb-button", "data-wb": "open-record" }, "Open record");
        b.onclick = () => this.options.openRecord(run);
        buttons.append(b);
      } else {
        const b = h("button", { class: "jp-wb-button jp-mod-warn", "data-wb": "cancel" }, "Cancel");
        b.onclick = () => void this.cancel(run, b);
        buttons.append(b);
      }
      const params = Object.entries(run.parameters ?? {})
        .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
        .join(" ");
      list.append(
        h(
          "li",
          { class: `jp-wb-run jp-wb-status-${run.status}`, "data-run": run.id, "data-status": run.status },
          h(
            "div",
            { class: "jp-wb-run-head" },
            h("span", { class: "jp-wb-run-name" }, notebookName(run.notebook)),
            h("span", { class: "jp-wb-badge", "data-wb": "status" }, label),
          ),
          h("div", { class: "jp-wb-muted jp-wb-mono", title: run.id }, `${run.id.slice(0, 10)} ${params}`),
          frac !== null && run.status === "running"
            ? h("progress", { class: "jp-wb-progress", max: "1", value: String(frac) })
            : null,
          failure ? h("div", { class: "jp-wb-error jp-wb-mono", "data-wb": "failure" }, failure) : null,
          buttons,
        ),
      );
    }
    setChildren(this.runsBox.node, 
      h("h2", { class: "jp-wb-heading" }, "Runs"),
      error ? h("p", { class: "jp-wb-error" }, error) : null,
      runs.length === 0 ? h("p", { class: "jp-wb-muted" }, "No runs yet.") : null,
      list,
    );
  }
}
