"""The ``reelrank`` command: score a CSV or Parquet file, or print a demo feed.

Exit status: 0 on success; 2 when the command cannot run as asked (bad usage, an
invalid input file, config or ``--now``, or the ``frame`` extra is missing), with a
one-line error on stderr. Nothing is written unless scoring succeeds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from . import __version__
from .exceptions import ConfigError, InvalidInputError
from .scoring._config import RankingConfig

__all__ = ["main"]

_PROG = "reelrank"

_TABLE_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}

_EXIT_OK = 0

_EXIT_INVALID = 2


class _UsageError(Exception):
    """The command line asks for something that cannot be done."""


def _table_format(path: Path, role: str) -> str:
    try:
        return _TABLE_SUFFIXES[path.suffix.lower()]
    except KeyError:
        known = ", ".join(sorted(_TABLE_SUFFIXES))
        raise _UsageError(f"{role} {str(path)!r}: unknown extension (expected {known})") from None


def _load_config(path: Path | None) -> RankingConfig | None:
    if path is None:
        return None
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            # A pyproject.toml keeps the ranking settings in its [tool.reelrank] table.
            table = "tool.reelrank" if path.name == "pyproject.toml" else None
            return RankingConfig.from_toml(path, table=table)
        if suffix == ".json":
            return RankingConfig.from_json(path.read_bytes())
    except OSError as exc:
        raise _UsageError(f"cannot read config {str(path)!r}: {exc.strerror or exc}") from exc
    raise _UsageError(f"config {str(path)!r}: unknown extension (expected .toml or .json)")


def _parse_now(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds):
            raise InvalidInputError("--now", f"expected finite epoch seconds, got {text!r}")
        return seconds
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInputError(
            "--now", f"expected ISO 8601 with a UTC offset or epoch seconds, got {text!r}"
        ) from None
    if moment.tzinfo is None:
        raise InvalidInputError("--now", f"{text!r} has no UTC offset; append Z or +HH:MM")
    return moment.timestamp()


def _read_table(path: Path) -> Any:
    file_format = _table_format(path, "input")
    import pyarrow as pa

    try:
        if file_format == "csv":
            from pyarrow import csv

            return csv.read_csv(path)
        from pyarrow import parquet

        return parquet.read_table(path)
    except OSError as exc:
        raise _UsageError(f"cannot read {str(path)!r}: {exc}") from exc
    except pa.ArrowInvalid as exc:
        raise _UsageError(f"cannot parse {str(path)!r}: {exc}") from exc


def _write_table(table: Any, path: Path) -> None:
    """Write through a temporary file in the same directory, so a failure leaves no partial file."""
    file_format = _table_format(path, "output")
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise _UsageError(f"output directory {str(directory)!r} does not exist")
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    os.close(descriptor)
    try:
        if file_format == "csv":
            from pyarrow import csv

            csv.write_csv(table, temporary)
        else:
            from pyarrow import parquet

            parquet.write_table(table, temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _score(args: argparse.Namespace) -> int:
    source, target = Path(args.input), Path(args.output)
    _table_format(source, "input")
    _table_format(target, "output")
    config = _load_config(None if args.config is None else Path(args.config))
    now = _parse_now(args.now)
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise _UsageError(
            'scoring files needs pyarrow; install the frame extra: pip install "reelrank[frame]"'
        ) from None
    from .scoring import score_frame

    table = _read_table(source)
    try:
        scored = score_frame(table, config=config, now=now, progress=args.progress)
    except ImportError as exc:
        raise _UsageError(str(exc)) from exc
    _write_table(scored, target)
    if not args.quiet:
        print(f"scored {scored.num_rows} rows -> {target}", file=sys.stderr)
    return _EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo

    run_demo(sys.stdout, seed=args.seed, catalog_size=args.catalog_size, page_size=args.page_size)
    return _EXIT_OK


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors reported as one line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(_EXIT_INVALID, f"{self.prog}: error: {message}\n")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=_PROG,
        description="Fast, explainable ranking for short-video feeds.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    score = commands.add_parser(
        "score",
        help="score every row of a CSV or Parquet file",
        description=(
            "Score every row of INPUT and write it to OUTPUT with the columns score, "
            "freshness, completion, engagement, affinity and deep_learning appended "
            "(the last five are weighted contributions that add up to score; an input "
            "affinity column is replaced by its contribution). The file format follows "
            "each extension: .csv, .parquet or .pq."
        ),
    )
    score.add_argument("input", metavar="INPUT", help="the file to score (.csv, .parquet, .pq)")
    score.add_argument("output", metavar="OUTPUT", help="where to write the scored rows")
    score.add_argument(
        "--config",
        metavar="FILE",
        help="ranking config as TOML or JSON (a pyproject.toml is read from [tool.reelrank])",
    )
    score.add_argument(
        "--now",
        metavar="WHEN",
        help="the moment freshness is measured from: ISO 8601 with a UTC offset "
        "(2026-01-31T12:00:00Z) or epoch seconds; defaults to the current time",
    )
    score.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show a progress bar (default: only for files over a million rows)",
    )
    score.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    score.set_defaults(handler=_score)

    demo = commands.add_parser(
        "demo",
        help="serve two feed pages for a synthetic catalog, with each item's per-signal breakdown",
        description=(
            "Fill the in-memory stores with a synthetic catalog, engagement and one user's "
            "history, then print two pages of that user's feed from FeedRankingService, "
            "with each item's score and per-signal contributions. Needs only the core."
        ),
    )
    demo.add_argument("--seed", type=int, default=7, help="seed of the synthetic catalog")
    demo.add_argument(
        "--catalog-size", type=_positive_int, default=500, help="videos in the catalog"
    )
    demo.add_argument("--page-size", type=_positive_int, default=10, help="items per page")
    demo.set_defaults(handler=_demo)
    return parser


def _fail(message: str) -> int:
    print(f"{_PROG}: error: {message}", file=sys.stderr)
    return _EXIT_INVALID


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``reelrank`` command line and return its exit status (it never exits itself)."""
    try:
        args = _build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else _EXIT_INVALID
    try:
        status: int = args.handler(args)
    except (_UsageError, ConfigError, InvalidInputError) as exc:
        return _fail(str(exc))
    except BrokenPipeError:
        # The reader (``| head``) has gone: stop quietly, as Unix tools do. Pointing
        # stdout at devnull keeps the interpreter's final flush from raising again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return status
