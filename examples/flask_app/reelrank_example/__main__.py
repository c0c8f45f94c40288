"""``python -m reelrank_example migrate|seed|load DIR|fold-stats|serve|token USER_ID``, from
``REELRANK_*`` settings."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from . import (
    Settings,
    configured_stores,
    create_default_app,
    fold_stats,
    is_empty,
    issue_token,
    load_directory,
    migrate,
    seed_synthetic_catalog,
    seed_synthetic_catalog_bulk,
)


def main(argv: list[str] | None = None) -> int:
    """Run one command; the exit status is 0 on success."""
    parser = argparse.ArgumentParser(prog="python -m reelrank_example")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="bring the configured databases to the newest schema")
    seed = commands.add_parser("seed", help="write the synthetic catalog")
    seed.add_argument(
        "--if-empty", action="store_true", help="do nothing when the catalog has videos"
    )
    seed.add_argument(
        "--bulk",
        action="store_true",
        help="draw a catalog of the same shape for load tests and write it with COPY "
        "(ready videos, events in batches; needs the catalog in SQL)",
    )
    load = commands.add_parser(
        "load",
        help="load creators, videos, renditions, follows and events from CSV or Parquet "
        "(COPY on PostgreSQL; nothing is written if a row is invalid)",
    )
    load.add_argument("directory", type=Path)
    fold = commands.add_parser(
        "fold-stats",
        help="roll ClickHouse's per-video statistics up, so reads merge less (run every few "
        "minutes; nothing to do without ClickHouse)",
    )
    fold.add_argument(
        "--until",
        type=_aware_datetime,
        default=None,
        help="the arrival watermark, ISO 8601 with a time zone (default: a minute ago)",
    )
    commands.add_parser("serve", help="serve with Flask's development server")
    token = commands.add_parser("token", help="print an HS256 token (needs REELRANK_AUTH_SECRET)")
    token.add_argument("user_id", type=int)
    token.add_argument("--hours", type=float, default=24.0)
    args = parser.parse_args(argv)
    settings = Settings()
    if args.command == "migrate":
        migrate(settings)
    elif args.command == "seed":
        stores = configured_stores(settings)
        try:
            if args.if_empty and not is_empty(stores):
                print("the catalog already has videos; not seeding")
                return 0
            if args.bulk:
                counts = seed_synthetic_catalog_bulk(stores, settings, now=datetime.now(UTC))
                print("seeded " + ", ".join(f"{n} {name}" for name, n in counts.items()))
            else:
                seed_synthetic_catalog(stores, settings, now=datetime.now(UTC))
                print(f"seeded {settings.videos} videos, {settings.events} events")
        finally:
            for close in stores.closers:
                close()
    elif args.command == "load":
        stores = configured_stores(settings)
        try:
            counts = load_directory(stores, args.directory)
        finally:
            for close in stores.closers:
                close()
        print(", ".join(f"{count} {name}" for name, count in counts.items()))
    elif args.command == "fold-stats":
        folded = fold_stats(settings, until=args.until)
        if folded is None:
            print("no ClickHouse configured; nothing to fold")
        else:
            print(f"rolled up the statistics of {folded} videos")
    elif args.command == "serve":
        app = create_default_app(settings)
        try:
            app.run(host=settings.host, port=settings.port)
        finally:
            app.extensions["reelrank_services"].close()
    else:
        if settings.auth_secret is None:
            parser.error("set REELRANK_AUTH_SECRET to sign tokens")
        print(issue_token(settings.auth_secret.get_secret_value(), args.user_id, hours=args.hours))
    return 0


def _aware_datetime(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {value!r}") from None
    if parsed.tzinfo is None:
        raise argparse.ArgumentTypeError(f"needs a time zone, such as +00:00: {value!r}")
    return parsed


def load_main(argv: list[str] | None = None) -> int:
    """``reelrank load DIR``: the same as ``python -m reelrank_example load DIR``."""
    return main(["load", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
