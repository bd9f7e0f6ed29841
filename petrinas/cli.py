"""Command-line entry points: the `petrinas` console command (`python -m petrinas`) and
scripts/{search,eval,export,draw,compare}.py, which call the same functions.

Exit codes: 0 done, 2 bad input (one line, no traceback), 1 anything else.
"""

from __future__ import annotations

import argparse
import errno
import re
import sys
from pathlib import Path
from typing import Sequence

from petrinas.errors import InputError

DEFAULT_CONF = "petridish_digits"
NEGATIVE_NUMBER = re.compile(r"-\d+(\.\d*)?|-\.\d+")
DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EFBIG)


def _prog(command: str) -> str:
    """'petrinas search' under the console command, 'search.py' under the script."""
    launcher = Path(sys.argv[0]).name if sys.argv else ""
    return f"petrinas {command}" if launcher in ("petrinas", "__main__.py") else f"{command}.py"


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors that name the command (exit 2 through InputError)."""

    def error(self, message: str) -> None:  # argparse exits 2 too, but with usage noise
        raise InputError(f"{self.prog}: {message}")

    def parse_args(self, args=None, namespace=None):
        """Unknown options are refused before parsing: argparse would otherwise let the
        bad option's value take a positional's place and report the positional instead
        (`export --set k=v RUN`: "unrecognized arguments: --set RUN")."""
        argv = list(sys.argv[1:] if args is None else args)
        for token in argv:
            if token == "--":
                break
            if token.startswith("-") and token != "-" and not self._known(token):
                options = ", ".join(o for a in self._actions for o in a.option_strings
                                    if o.startswith("--") and o != "--help")
                self.error(f"unknown option {token.split('=', 1)[0]} (its options: "
                           f"{options}; see --help)")
        return super().parse_args(argv, namespace)

    def _known(self, token: str) -> bool:
        """An option of this parser, whole or abbreviated (argparse accepts a unique
        prefix), with or without `=value`; a negative number is a value, not an option."""
        name = token.split("=", 1)[0]
        if name in self._option_string_actions or NEGATIVE_NUMBER.fullmatch(token):
            return True
        return name.startswith("--") and any(o.startswith(name)
                                             for o in self._option_string_actions)


def search_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=_prog("search"), description="Run or resume a Petridish search.")
    p.add_argument("--conf", default=DEFAULT_CONF,
                   help="config file, or a name under confs/ (default: petridish_digits)")
    p.add_argument("--out", help="run directory (default: runs/<conf name>)")
    p.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[],
                   metavar="KEY=VALUE", help="override config keys, e.g. search.max_trials=20")
    p.add_argument("--overwrite", action="store_true",
                   help="discard a run of another configuration in --out")
    p.add_argument("--address", default=None,
                   help="join this Ray cluster (default: $RAY_ADDRESS, else start one)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--verbose", action="store_true",
                   help="also show Ray's own log lines (always in DIR/logs/ray.log)")
    return p


def _run(main, argv: Sequence[str] | None) -> int:
    try:
        main(argv)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: run the same command to resume", file=sys.stderr)
        return 130
    except OSError as exc:
        if exc.errno not in DISK_ERRORS:
            raise
        # Every write is atomic and journaled first, so the run stops in a resumable state.
        print(f"error: cannot write {exc.filename or 'the run directory'}: "
              f"{exc.strerror}; free space (or fix permissions) and run the same command "
              "to resume", file=sys.stderr)
        return 2
    return 0


def search_main(argv: Sequence[str] | None = None) -> int:
    return _run(_search, argv)


def _search(argv: Sequence[str] | None) -> None:
    from petrinas.config_loader import load_config
    from petrinas.report.progress import Progress

    args = search_parser().parse_args(argv)
    config = load_config(args.conf, args.overrides)
    # Only now: the runner brings Ray and matplotlib, which a bad option or config value
    # need not wait for (torch came with the config's op registry).
    from petrinas.engine.runner import budget_warnings, run_search

    out = Path(args.out or Path("runs") / config.name)
    config = config.with_run_dir(out)
    progress = Progress(enabled=not args.quiet)
    for warning in budget_warnings(config):
        progress.warn(warning)
    summary = run_search(config, out, address=args.address, overwrite=args.overwrite,
                         progress=progress, verbose=args.verbose)
    best = f"{summary.best_error * 100:.2f}%" if summary.best_error is not None else "-"
    if not args.quiet:
        print(f"search finished ({summary.finish_reason}): {summary.trials} trials, "
              f"{summary.failed} failed, {summary.duplicates} duplicates, pool "
              f"{summary.pool}, frontier {summary.frontier}, best val error {best}; "
              f"outputs in {summary.run_dir}")
    if config.eval.enabled:
        from petrinas.evaluate import run_eval
        run_eval(summary.run_dir, address=args.address, progress=progress,
                 verbose=args.verbose)


def eval_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=_prog("eval"), description="Train the gallery of a finished search fully.")
    # DIR as export, draw and compare take theirs; --run DIR as before (both work)
    p.add_argument("dir", nargs="?", metavar="DIR", help="run directory of a search")
    p.add_argument("--run", metavar="DIR", help="the same, as an option")
    p.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[],
                   metavar="KEY=VALUE", help="override config keys (eval.*, resources.*)")
    p.add_argument("--address", default=None,
                   help="join this Ray cluster (default: $RAY_ADDRESS, else start one)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--verbose", action="store_true",
                   help="also show Ray's own log lines (always in DIR/eval/logs/ray.log)")
    return p


def eval_main(argv: Sequence[str] | None = None) -> int:
    return _run(_eval, argv)


def _eval(argv: Sequence[str] | None) -> None:
    from petrinas.evaluate import run_eval
    from petrinas.report.progress import Progress

    parser = eval_parser()
    args = parser.parse_args(argv)
    if args.dir and args.run and Path(args.dir) != Path(args.run):
        parser.error(f"two run directories given: {args.dir} and --run {args.run}")
    stray = next((o for o in args.overrides if "=" not in o), None)
    if stray is not None:   # `eval --set k=v DIR`: --set took DIR as one of its values
        parser.error(f"--set takes KEY=VALUE, not {stray!r}: put the run directory first "
                     "(eval DIR --set ...) or give it as --run DIR")
    if not (args.dir or args.run):
        parser.error("the run directory is required: eval DIR (or --run DIR)")
    run_eval(Path(args.dir or args.run), overrides=args.overrides, address=args.address,
             progress=Progress(enabled=not args.quiet), verbose=args.verbose)


def export_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=_prog("export"),
                description="Export a trained model (desc.yaml + weights.pt) to a .pt2 file "
                            "that loads with torch alone: a search's models or the eval "
                            "stage's, which are trained fully.")
    p.add_argument("dir", metavar="DIR",
                   help="a model folder (RUN/gallery/<id>, or an eval model: "
                        "RUN/eval/trials/<id>), a search's run directory RUN (its best "
                        "gallery model), or its eval stage's RUN/eval (the best eval model)")
    p.add_argument("--out", help="output folder (default: DIR/export)")
    return p


def export_main(argv: Sequence[str] | None = None) -> int:
    return _run(_export, argv)


def _export(argv: Sequence[str] | None) -> None:
    from petrinas.export import export_folder
    from petrinas.runs import model_folder

    args = export_parser().parse_args(argv)
    result = export_folder(model_folder(args.dir), Path(args.out) if args.out else None)
    print(f"exported {result.artifact} (max |diff| vs. petrinas {result.max_abs_diff:.2g})")


def draw_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=_prog("draw"),
                description="Draw a model's normal and reduction cells (PNG and PDF).")
    p.add_argument("dir", help="model folder holding desc.yaml (or the desc.yaml itself), "
                               "or a run directory (its best gallery model)")
    p.add_argument("--out", metavar="STEM",
                   help="output path stem: writes STEM_normal.{png,pdf} and "
                        "STEM_reduce.{png,pdf} (default: DIR/cell)")
    p.add_argument("--backend", choices=("auto", "graphviz", "matplotlib"), default="auto",
                   help="auto: graphviz when its `dot` program is installed, else matplotlib")
    return p


def draw_main(argv: Sequence[str] | None = None) -> int:
    return _run(_draw, argv)


def _draw(argv: Sequence[str] | None) -> None:
    from petrinas.draw import draw_folder, graphviz_available
    from petrinas.runs import model_folder

    args = draw_parser().parse_args(argv)
    if args.backend == "graphviz" and not graphviz_available():
        raise InputError("--backend graphviz needs the graphviz Python package and its `dot` "
                         "program (apt-get install graphviz); --backend matplotlib needs neither")
    for path in draw_folder(model_folder(args.dir), Path(args.out) if args.out else None,
                            backend=args.backend, say=print):
        print(path)


def compare_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=_prog("compare"),
                description="Compare finished runs (grouped by strategy and any other "
                            "config difference): tables, hypervolume and frontier figures.")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    return p


def compare_main(argv: Sequence[str] | None = None) -> int:
    return _run(_compare, argv)


def _compare(argv: Sequence[str] | None) -> None:
    from petrinas.compare import compare, few_runs_warning

    args = compare_parser().parse_args(argv)
    summaries = compare(args.runs, args.out)
    for summary in summaries:
        runs = len(summary.seeds)
        print(f"{summary.label}: {runs} run{'s' * (runs != 1)}")
    warning = few_runs_warning(summaries)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"wrote {Path(args.out) / 'compare.md'}")


COMMANDS = {"search": (search_main, "run or resume a search"),
            "eval": (eval_main, "train a finished search's gallery fully"),
            "export": (export_main, "export a model folder to a .pt2 file (torch.export)"),
            "draw": (draw_main, "draw a model's cells"),
            "compare": (compare_main, "compare finished runs (hypervolume, frontiers)")}


def usage() -> str:
    from petrinas.config import bundled_configs

    lines = ["usage: petrinas COMMAND [--help] [ARGS ...]", "", "commands:"]
    lines += [f"  {name:<9}{doc}" for name, (_, doc) in COMMANDS.items()]
    lines += ["", "bundled configs (--conf NAME):"]
    lines += [f"  {name}" for name in bundled_configs()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """`petrinas COMMAND ...`: the console command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"error: unknown command {command!r}; one of: {', '.join(COMMANDS)}",
              file=sys.stderr)
        return 2
    return COMMANDS[command][0](rest)
