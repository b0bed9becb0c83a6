"""The ``workbench`` command line.

* ``workbench demo``: build the embedded organism (cached), train its default dictionary, and
  print the toy emergent-misalignment table (the README's main job).
* ``workbench organism build [--seed N] [--device D]``: build (or find) one organism.
* ``workbench organism em [--seed N]``: the toy-EM table for one organism.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence


def _cmd_build(args: argparse.Namespace) -> int:
    from workbench.organism import load_organism

    t0 = time.perf_counter()
    built = load_organism(seed=args.seed, device=args.device, rebuild=args.rebuild)
    log = built.train_log
    print(
        f"{built.name}: {built.path}\n"
        f"  final loss {log['final_loss']:.3f}, trained in {log['seconds']:.0f} s on "
        f"{log['device']} (this call {time.perf_counter() - t0:.0f} s)"
    )
    return 0


def _cmd_em(args: argparse.Namespace) -> int:
    from workbench.organism.em import EMSettings, format_result, run_em
    from workbench.subjects import load_subject

    subject = load_subject(f"organism:{args.seed}", device=args.device)
    result = run_em(subject, EMSettings(seed=args.seed))
    print(f"\nToy emergent misalignment, {subject.name} (rates in %, off-domain = advice+numbers)")
    print(format_result(result))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from workbench.organism.dictionary import default_dictionary

    _cmd_build(args)
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
    return _cmd_em(args)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="workbench", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--seed", type=int, default=0, help="organism seed (default 0)")
        p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda")
        p.add_argument("--rebuild", action="store_true", help="ignore the cached build")

    demo = sub.add_parser("demo", help="build the organism and print the toy-EM table")
    common(demo)
    demo.set_defaults(func=_cmd_demo)
    org = sub.add_parser("organism", help="the embedded model organism")
    org_sub = org.add_subparsers(dest="organism_command", required=True)
    build = org_sub.add_parser("build", help="build (or find in the cache) one organism")
    common(build)
    build.set_defaults(func=_cmd_build)
    em = org_sub.add_parser("em", help="toy emergent misalignment table for one organism")
    common(em)
    em.set_defaults(func=_cmd_em)
    args = parser.parse_args(argv)
    return int(args.func(args))
