"""The ``workbench`` command line.

* ``workbench demo [--small]``: build the embedded organism (cached) and its default dictionary,
  then run the flagship ``alignment_audit`` notebook as a run and print where its report and
  deployment record are, with the headline figures (the README's main job). ``--small``: the
  small organism and small sizes (seconds; a check that an install works, not the figures).
* ``workbench analyses``: the notebooks runnable by name (shipped, plus a user's own folders).
* ``workbench --analyses DIR ...``: any command, with ``DIR`` searched for notebook names first
  (adds to ``$WORKBENCH_ANALYSES``; repeatable).
* ``workbench run NOTEBOOK -p NAME VALUE ...``: one parameterized notebook into ``runs/<id>/``.
* ``workbench sweep NOTEBOOK --grid grid.yaml [--executor local|ray] [--workers N]``: many.
* ``workbench runs list|show``: the runs on disk.
* ``workbench record verify RECORD``: re-check a deployment record's schema and fingerprints.
* ``workbench organism build [--seed N] [--device D]``: build (or find) one organism.
* ``workbench organism em [--seed N]``: the toy-EM table for one organism.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from workbench.organism import OrganismConfig


def _cmd_build(args: argparse.Namespace) -> int:
    from workbench.organism import load_organism

    t0 = time.perf_counter()
    config = _small_config() if getattr(args, "small", False) else None
    built = load_organism(seed=args.seed, config=config, device=args.device, rebuild=args.rebuild)
    log = built.train_log
    print(
        f"{built.name}: {built.path}\n"
        f"  final loss {log['final_loss']:.3f}, trained in {log['seconds']:.0f} s on "
        f"{log['device']} (this call {time.perf_counter() - t0:.0f} s)"
    )
    return 0


def _cmd_em(args: argparse.Namespace) -> int:
    from workbench.experiments.toy_em import EMSettings, format_result, run_em
    from workbench.subjects import load_subject

    subject = load_subject(f"organism:{args.seed}", device=args.device)
    result = run_em(subject, EMSettings(seed=args.seed))
    print(f"\nToy emergent misalignment, {subject.name} (rates in %, off-domain = advice+numbers)")
    print(format_result(result))
    return 0


#: the flagship's parameters under ``workbench demo --small``: the small organism (SMALL_CONFIG)
#: and small sizes, as in the notebook tests; seconds instead of minutes, noisy figures
SMALL_DEMO: dict[str, object] = {
    "organism": "small", "steps": 30, "n_examples": 200, "n_prompts": 40, "n_boot": 50,
    "n_eval": 40, "samples": 4, "n_random": 2,
}
FLAGSHIP = "alignment_audit"


def _small_config() -> OrganismConfig:
    from workbench.organism import SMALL_CONFIG

    return SMALL_CONFIG


def _cmd_demo(args: argparse.Namespace) -> int:
    from workbench.dictionaries import default_dictionary
    from workbench.runs import resolve_notebook, run

    try:
        flagship = resolve_notebook(FLAGSHIP)
    except (ValueError, FileNotFoundError) as e:
        print(f"workbench demo: {e}", file=sys.stderr)
        return 2
    _cmd_build(args)
    parameters: dict[str, object] = {"seed": args.seed, "device": args.device}
    if args.small:
        parameters.update(SMALL_DEMO)
        print("dictionary: the small organism's, trained (or found) by the flagship itself")
    else:
        t0 = time.perf_counter()
        d = default_dictionary(seed=args.seed, device=args.device)
        stats = d.stats
        extra = (
            f"explained variance {stats.explained_variance:.3f}, L0 {stats.l0:.1f}"
            if stats is not None
            else "(cached)"
        )
        print(
            f"dictionary {d.name}: d_sae={d.d_sae} at {d.hook_name}, {extra} "
            f"({time.perf_counter() - t0:.0f} s)\n  {d.path}"
        )
    print(f"\nrunning the flagship analysis, {flagship} ...")
    info = run(flagship, parameters, runs_root=args.runs_root, force=args.rebuild)
    if not info.ok:
        print(f"the flagship run failed: {info.summary()}\n  see {info.run_dir}/log.txt")
        return 1
    _print_headline(info.run_dir)
    return 0


def _print_headline(run_dir: object) -> None:
    """The flagship record's headline figures and where the report and record are."""
    import json
    from pathlib import Path

    folder = Path(str(run_dir))
    record = json.loads((folder / "record.json").read_text())
    forecast = record.get("forecast") or {}
    patch = (record.get("patches") or [{}])[0].get("efficacy", {})
    context = (record.get("context_audits") or [{}])[0]

    def pct(x: object) -> str:
        return f"{100 * float(x):.1f}%" if isinstance(x, int | float) else "n/a"

    print(f"\n{record['title']}")
    expected = forecast.get("expected") or {}
    if expected.get("text"):
        print(f"  forecast: {expected['text']} of off-domain misalignment "
              f"({100 * float(expected.get('level', 0.8)):.0f}% interval, calibration "
              f"{expected.get('calibration')}), before any training")
    rate = forecast.get("rate") or {}
    if isinstance(rate.get("risk"), int | float):
        print(f"  rate forecast {rate['risk']:+.3g} (the misaligned rate's first-order rise, "
              f"{rate.get('step')} step, in {float(rate.get('seconds', float('nan'))):.2f} s)")
    print(f"  forecast alignment risk {forecast.get('risk', float('nan')):+.3g} "
          f"(forecast in {forecast.get('seconds', float('nan')):.2f} s)")
    em = None
    if isinstance(patch.get("tuned_misaligned"), int | float):
        em = 100 * (float(patch["tuned_misaligned"]) - float(patch["base_misaligned"]))
    print(f"  misaligned off-domain: base {pct(patch.get('base_misaligned'))}, "
          f"tuned {pct(patch.get('tuned_misaligned'))}"
          f"{f' (measured {em:+.1f} points)' if em is not None else ''}, "
          f"with the misalignment direction ablated {pct(patch.get('ablated_misaligned'))}")
    for i, p in enumerate(record.get("patches") or []):
        e, kind = p.get("efficacy", {}), (p.get("patch") or {}).get("kind", "patch")
        strength = (p.get("patch") or {}).get("strength")
        if isinstance(strength, int | float) and strength != 1:
            kind = f"{kind} at strength {strength:g}"
        if i:  # the flagship's second patch: the most selective one on the selection prompts
            kind = f"selective {kind}"
        if "em_cut" in e:
            print(f"  {kind}: EM cut {pct(e.get('em_cut'))}, keeping "
                  f"{pct(e.get('retention'))} of what the fine-tune learned in its own domain "
                  f"(random directions: cut {pct(e.get('random_em_cut'))})")
    print(f"  deployment context: misaligned {pct(context.get('misaligned_a'))} under "
          f"{context.get('framing_a')}, {pct(context.get('misaligned_b'))} under "
          f"{context.get('framing_b')}")
    print(f"\nreport: {folder / 'report.html'}\nrecord: {folder / 'record.json'}"
          f"\n(check it with: workbench record verify {folder / 'record.json'})")


def _cmd_analyses(args: argparse.Namespace) -> int:
    from workbench.runs import analyses_dirs, available_notebooks, resolve_notebook

    names = available_notebooks()
    width = max((len(n) for n in names), default=0)
    for name in names:
        print(f"{name:<{width}}  {resolve_notebook(name)}")
    print(f"({len(names)} analyses; folders searched in order: "
          f"{', '.join(str(d) for d in analyses_dirs())})")
    return 0


def _add_analyses(argv: list[str]) -> list[str] | None:
    """``--analyses DIR`` options (anywhere on the line) -> prepended to ``$WORKBENCH_ANALYSES``
    (this process and the kernels and workers it starts); the other arguments, or ``None`` when a
    DIR is not a folder."""
    import os
    from pathlib import Path

    from workbench.runs._params import ANALYSES_ENV

    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--analyses", action="append", default=[])
    found, rest = pre.parse_known_args(argv)
    if not found.analyses:
        return argv
    dirs = [Path(d).expanduser().resolve() for d in found.analyses]
    for d in dirs:
        if not d.is_dir():
            print(f"workbench: --analyses {d}: not a folder", file=sys.stderr)
            return None
    old = os.environ.get(ANALYSES_ENV)
    os.environ[ANALYSES_ENV] = os.pathsep.join([*map(str, dirs), *([old] if old else [])])
    return rest


def _cmd_verify(args: argparse.Namespace) -> int:
    from workbench.record import main_verify

    return main_verify(args.record, base=args.base)


def _delegated() -> dict[str, Callable[[Sequence[str]], int]]:
    from workbench.runs._cli import main_run, main_runs, main_sweep

    return {"run": main_run, "sweep": main_sweep, "runs": main_runs}


def main(argv: Sequence[str] | None = None) -> int:
    given = _add_analyses(list(sys.argv[1:] if argv is None else argv))
    if given is None:
        return 2
    args_in = given
    if args_in and args_in[0] in ("run", "sweep", "runs"):  # they parse their own arguments
        return _delegated()[args_in[0]](args_in[1:])
    parser = argparse.ArgumentParser(prog="workbench", description=__doc__.split("\n")[0])
    parser.add_argument("--analyses", metavar="DIR", action="append",
                        help="a folder of your own notebooks, searched for names before the "
                        "shipped analyses (repeatable; adds to $WORKBENCH_ANALYSES)")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("run", "run one parameterized notebook (see: workbench run -h)"),
                       ("sweep", "run a notebook over a grid (see: workbench sweep -h)"),
                       ("runs", "list or show runs (see: workbench runs -h)")):
        sub.add_parser(name, help=text, add_help=False)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--seed", type=int, default=0, help="organism seed (default 0)")
        p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda")
        p.add_argument("--rebuild", action="store_true", help="ignore the cached build")

    demo = sub.add_parser("demo", help="build the organism and run the flagship analysis")
    common(demo)
    demo.add_argument("--runs-root", default="runs", help="where runs are written (default runs/)")
    demo.add_argument("--small", action="store_true",
                      help="the small organism and small sizes: seconds, to check an install "
                      "(the figures are noisy)")
    demo.set_defaults(func=_cmd_demo)
    listing = sub.add_parser("analyses", help="list the notebooks runnable by name")
    listing.set_defaults(func=_cmd_analyses)
    rec = sub.add_parser("record", help="deployment records")
    rec_sub = rec.add_subparsers(dest="record_command", required=True)
    ver = rec_sub.add_parser("verify", help="re-check a record's schema and fingerprints")
    ver.add_argument("record", help="path of a record.json")
    ver.add_argument("--base", default=None, help="folder the record's files moved to")
    ver.set_defaults(func=_cmd_verify)
    org = sub.add_parser("organism", help="the embedded model organism")
    org_sub = org.add_subparsers(dest="organism_command", required=True)
    build = org_sub.add_parser("build", help="build (or find in the cache) one organism")
    common(build)
    build.set_defaults(func=_cmd_build)
    em = org_sub.add_parser("em", help="toy emergent misalignment table for one organism")
    common(em)
    em.set_defaults(func=_cmd_em)
    args = parser.parse_args(args_in)
    return int(args.func(args))
