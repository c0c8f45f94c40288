"""The ``reelrank`` command: score a CSV or Parquet file, print a demo feed, evaluate
ranking configs offline on an event log, or tune the weights.

Exit status: 0 on success; 2 when the command cannot run as asked (bad usage, an
invalid input file, config or ``--now``, or a needed extra is missing), with a
one-line error on stderr. Nothing is written unless the command succeeds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any, NoReturn

from . import __version__
from .exceptions import ConfigError, InvalidInputError
from .models._base import WEIGHT_FIELDS
from .scoring._config import RankingConfig

__all__ = ["main"]

_PROG = "reelrank"
# Other distributions add subcommands here, so ``reelrank`` never imports them itself:
# an entry point ``load = "pkg.module:func"`` makes ``reelrank load ARGS...`` call
# ``func(["ARGS", ...])``, which returns the exit status.
PLUGIN_GROUP = "reelrank.commands"
# A plugin cannot replace these.
_BUILTIN_COMMANDS = frozenset({"score", "demo", "evaluate", "tune"})

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
        scored = score_frame(
            table, config=config, now=now, progress=args.progress, prefix=args.prefix
        )
    except ImportError as exc:
        raise _UsageError(str(exc)) from exc
    _write_table(scored, target)
    if not args.quiet:
        print(f"scored {scored.num_rows} rows -> {target}", file=sys.stderr)
    return _EXIT_OK


def _evaluation() -> Any:
    try:
        from . import evaluation
    except ImportError as exc:
        raise _UsageError(str(exc)) from exc
    return evaluation


def _read_frame(path: Path, time_columns: Sequence[str]) -> Any:
    """A CSV or Parquet file as pandas; text timestamps must carry a UTC offset."""
    file_format = _table_format(path, "input")
    import pandas as pd

    try:
        frame = pd.read_csv(path) if file_format == "csv" else pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise _UsageError(f"cannot read {str(path)!r}: {exc}") from exc
    for name in time_columns:
        if name in frame.columns and pd.api.types.is_string_dtype(frame[name].dtype):
            try:
                parsed = pd.to_datetime(frame[name], format="ISO8601")
            except (ValueError, TypeError) as exc:
                raise InvalidInputError(name, f"expected ISO 8601 timestamps: {exc}") from exc
            if not isinstance(parsed.dtype, pd.DatetimeTZDtype):
                raise InvalidInputError(name, "timestamps need a UTC offset; append Z or +HH:MM")
            frame[name] = parsed
    return frame


def _named_configs(specs: Sequence[str] | None) -> dict[str, RankingConfig]:
    configs = {"default": RankingConfig()}
    for spec in specs or ():
        name, separator, file = spec.partition("=")
        if not separator or not name or not file:
            raise _UsageError(f"--config {spec!r}: expected NAME=FILE")
        if name in configs:
            raise _UsageError(f"--config {spec!r}: the name {name!r} is taken")
        loaded = _load_config(Path(file))
        assert loaded is not None  # a path was given
        configs[name] = loaded
    return configs


def _print_table(frame: Any) -> None:
    print(frame.to_string(float_format=lambda value: f"{value:.4f}"))


def _run_evaluate(args: argparse.Namespace) -> int:
    evaluation = _evaluation()
    configs = _named_configs(args.config)
    events = _read_frame(Path(args.events), ["time"])
    catalog = _read_frame(Path(args.catalog), ["published_at"])
    if args.split == "time":
        cutoff = _parse_now(args.cutoff)
        if cutoff is None:
            raise _UsageError("--split time needs --cutoff")
        train, test = evaluation.time_split(events, cutoff)
        now: float | None = cutoff
    else:
        if args.cutoff is not None:
            raise _UsageError("--cutoff applies to --split time only")
        train, test = evaluation.hold_last_split(events)
        now = None
    result = evaluation.evaluate(train, test, catalog, configs, now=now, k=args.k)
    users = result.per_user["user_id"].nunique()
    print(f"{users} users, k = {args.k}, {len(train)} train and {len(test)} test events")
    _print_table(result.table())
    for name in list(configs)[1:]:
        print(f"\n{name} - default, paired bootstrap over users (95% interval):")
        comparison = result.compare("default", name, resamples=args.resamples, seed=args.seed)
        _print_table(comparison.drop(columns=["baseline", "challenger"]).set_index("metric"))
    return _EXIT_OK


def _run_tune(args: argparse.Namespace) -> int:
    evaluation = _evaluation()
    if args.output is not None and Path(args.output).suffix.lower() not in (".toml", ".json"):
        raise _UsageError(f"output {args.output!r}: expected a .toml or .json file")
    base = _load_config(None if args.base is None else Path(args.base)) or RankingConfig()
    events = _read_frame(Path(args.events), ["time"])
    catalog = _read_frame(Path(args.catalog), ["published_at"])
    validation_cut, test_cut = _parse_now(args.validation_cutoff), _parse_now(args.test_cutoff)
    assert validation_cut is not None and test_cut is not None  # both are required options
    if not validation_cut < test_cut:
        raise InvalidInputError("--test-cutoff", "must come after --validation-cutoff")
    train, rest = evaluation.time_split(events, validation_cut)
    validation, _ = evaluation.time_split(rest, test_cut)
    try:
        tuned = evaluation.tune_weights(
            train,
            validation,
            catalog,
            metric=args.metric,
            k=args.k,
            trials=args.trials,
            seed=args.seed,
            base=base,
            now=validation_cut,
            progress=args.progress,
        )
    except ImportError as exc:  # --progress without tqdm
        raise _UsageError(str(exc)) from exc
    history, test = evaluation.time_split(events, test_cut)
    held = evaluation.evaluate(
        history, test, catalog, {"base": base, "tuned": tuned.config}, now=test_cut, k=args.k
    )
    print(
        f"{tuned.metric} on validation: base {tuned.baseline_value:.4f}, "
        f"tuned {tuned.best_value:.4f} ({len(tuned.trials)} configurations tried)"
    )
    print(
        "tuned weights: "
        + ", ".join(
            f"{name} {value:.3f}"
            for name, value in zip(WEIGHT_FIELDS, tuned.config.weights, strict=True)
        )
    )
    print("\nheld-out test (events after --test-cutoff):")
    _print_table(held.table())
    print("\ntuned - base, paired bootstrap over users (95% interval):")
    comparison = held.compare("base", "tuned", seed=args.seed)
    _print_table(comparison.drop(columns=["baseline", "challenger"]).set_index("metric"))
    if args.output is not None:
        target = Path(args.output)
        text = (
            evaluation.config_to_toml(tuned.config)
            if target.suffix.lower() == ".toml"
            else tuned.config.model_dump_json(indent=2) + "\n"
        )
        try:
            target.write_text(text)
        except OSError as exc:
            raise _UsageError(f"cannot write {str(target)!r}: {exc.strerror or exc}") from exc
        print(f"\nwrote the tuned config -> {target}", file=sys.stderr)
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


def _plugin_commands() -> dict[str, EntryPoint]:
    """Subcommands other installed distributions register under :data:`PLUGIN_GROUP`."""
    return {entry.name: entry for entry in entry_points(group=PLUGIN_GROUP)}


def _build_parser(plugins: dict[str, EntryPoint] | None = None) -> argparse.ArgumentParser:
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
            "affinity column is replaced by its contribution unless --prefix is given). "
            "The file format follows "
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
    score.add_argument(
        "--prefix",
        metavar="TEXT",
        default="",
        help="put TEXT before every output column name, e.g. contrib_, so the input "
        "affinity column is kept (default: no prefix)",
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

    data_help = (
        "EVENTS has the columns user_id, video_id, time, kind (watch, like, unlike, share, "
        "comment) and completion; CATALOG has video_id, creator_id, published_at and "
        "optionally sound_id and dl_score. Times are epoch seconds or ISO 8601 with a UTC "
        "offset. Needs the eval extra."
    )
    evaluate = commands.add_parser(
        "evaluate",
        help="replay an event log and compare ranking configs offline",
        description=(
            "Rank each user's candidates as of the split with every config, as the feed "
            "service does, and score the lists against what users did afterwards: "
            "NDCG, recall, MRR and MAP at K (graded relevance, computed by ranx), catalog "
            "coverage, creator Gini, novelty and mean age. The default weights are always "
            "included, and every other config is compared with them by a paired bootstrap. "
            + data_help
        ),
    )
    evaluate.add_argument("events", metavar="EVENTS", help="event log (.csv, .parquet, .pq)")
    evaluate.add_argument("catalog", metavar="CATALOG", help="videos (.csv, .parquet, .pq)")
    evaluate.add_argument(
        "--config",
        action="append",
        metavar="NAME=FILE",
        help="a config to evaluate, as TOML or JSON, under NAME (repeatable)",
    )
    evaluate.add_argument(
        "--split",
        choices=["time", "hold-last"],
        default="time",
        help="time: test is every event from --cutoff on; hold-last: each user's last "
        "watched video (default: time)",
    )
    evaluate.add_argument("--cutoff", metavar="WHEN", help="the moment of ranking for --split time")
    evaluate.add_argument("-k", type=_positive_int, default=10, help="list length (default 10)")
    evaluate.add_argument(
        "--resamples", type=_positive_int, default=2000, help="bootstrap resamples"
    )
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    evaluate.set_defaults(handler=_run_evaluate)

    tune = commands.add_parser(
        "tune",
        help="tune the five weights on an event log and report a held-out metric",
        description=(
            "Search the weight simplex (seeded random search, then coordinate refinement) "
            "for the weights that maximise METRIC@K on the events between "
            "--validation-cutoff and --test-cutoff, ranking from the events before "
            "--validation-cutoff; then report every metric on the events after "
            "--test-cutoff for the base and tuned configs. " + data_help
        ),
    )
    tune.add_argument("events", metavar="EVENTS", help="event log (.csv, .parquet, .pq)")
    tune.add_argument("catalog", metavar="CATALOG", help="videos (.csv, .parquet, .pq)")
    tune.add_argument("--validation-cutoff", metavar="WHEN", required=True)
    tune.add_argument("--test-cutoff", metavar="WHEN", required=True)
    tune.add_argument(
        "--metric",
        choices=["ndcg", "recall", "mrr", "map"],
        default="ndcg",
        help="the metric to maximise (default ndcg)",
    )
    tune.add_argument("-k", type=_positive_int, default=10, help="list length (default 10)")
    tune.add_argument(
        "--trials", type=_positive_int, default=40, help="random points on the simplex"
    )
    tune.add_argument("--seed", type=int, default=0, help="seed of the search")
    tune.add_argument(
        "--base", metavar="FILE", help="config whose other fields are kept (TOML or JSON)"
    )
    tune.add_argument(
        "--output", metavar="FILE", help="write the tuned config here (.toml or .json)"
    )
    tune.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show a progress bar on stderr, one step per configuration tried "
        "(default: only when stderr is a terminal)",
    )
    tune.set_defaults(handler=_run_tune)
    for name, entry in sorted((plugins or {}).items()):
        if name not in _BUILTIN_COMMANDS:
            provider = entry.dist.name if entry.dist is not None else entry.value
            commands.add_parser(name, help=f"provided by {provider}; see {name} --help")
    return parser


def _fail(message: str) -> int:
    print(f"{_PROG}: error: {message}", file=sys.stderr)
    return _EXIT_INVALID


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``reelrank`` command line and return its exit status (it never exits itself)."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    plugins = _plugin_commands()
    if arguments and arguments[0] in plugins and arguments[0] not in _BUILTIN_COMMANDS:
        command: Callable[[list[str]], int] = plugins[arguments[0]].load()
        return int(command(arguments[1:]))
    try:
        args = _build_parser(plugins).parse_args(arguments)
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
