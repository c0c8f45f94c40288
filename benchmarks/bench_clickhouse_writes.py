"""Event writes at 100,000 and 1,000,000 stored events, as the example service makes
them: each event appended to the event store and recorded in the engagement log side
by side, through their group commits, and a like answered with its video's fresh
count (``get_stats``), from many request threads at a paced rate.

Each size gets the events of a bulk seed (in batches of 10,000; times spread over the
two weeks before now as ``seed --bulk`` draws them, so that the hour before now holds
about 2% of them) and a statistics roll-up, in a database of its own. With
``REELRANK_BENCH_CLICKHOUSE_BASELINE`` set to another checkout's
``adapters/reelrank-clickhouse/src`` (such as the main branch's), that code seeds and
drives databases of its own on the same server, and the two take turns, round by
round: each round drives this tree's code and the baseline's, in child processes, for
``REELRANK_BENCH_WRITE_SECONDS`` (20 s; quick mode 6 s) at each rate of
``REELRANK_BENCH_WRITE_RATES`` (events/s: 30 and 100; quick mode 30). Printed per
size, rate and code: the latency of the append, the log's record, the like's count
read and the whole event (p50 / p99), and from ``system.query_log`` the mean time and
rows read of each statement the writes ran, and the background merges of each table
in that time (``system.part_log``). Skips when ``clickhouse-server`` or
``reelrank-clickhouse`` is not installed.

Run as ``python -m pytest benchmarks/bench_clickhouse_writes.py -s -p no:cacheprovider``.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

_QUICK = os.environ.get("REELRANK_BENCH_QUICK") == "1"
_SIZES = (20_000, 200_000) if _QUICK else (100_000, 1_000_000)
_SEED_BATCH = 10_000
_DAYS = 14
_VIDEOS = 1_000_000
_USERS = 100_000
_THREADS = 64

pytestmark = pytest.mark.timeout(900 if _QUICK else 3_600)

# The server's log of new and merged parts, for the merges behind each drive.
_PART_LOG = """<part_log>
    <database>system</database>
    <table>part_log</table>
    <flush_interval_milliseconds>1000</flush_interval_milliseconds>
</part_log>"""


def _seed(port: int, database: str, events: int) -> None:
    """Create the schema with the code on ``sys.path`` and load ``events`` events in
    batches of 10,000 into the event store's and the log's tables, then roll up."""
    from reelrank_clickhouse import ClickHouseConfig, ClickHouseEventStore, connect, create_schema
    from reelrank_clickhouse._client import DriverClients

    config = ClickHouseConfig(port=port, database=database, send_receive_timeout_seconds=600.0)
    engine = connect(config)
    create_schema(engine)
    now = int(time.time())
    first_seq = time.time_ns() - 3_600 * 10**9
    client = DriverClients(engine).writer()
    try:
        for start in range(0, events, _SEED_BATCH):
            count = min(_SEED_BATCH, events - start)
            # Ages as the bulk seed draws them: a video's age (uniform over the two
            # weeks) times a uniform fraction, so recent hours hold more events.
            for table, extra_column, extra_value in (
                ("events", ", creator_id", ", 1 + video % 50000"),
                ("engagement_log", "", ""),
            ):
                client.execute(
                    f"""INSERT INTO {table} (event_id, kind, user_id, video_id, occurred_at,
    occurred_us, completion, seq{extra_column})
SELECT concat('bulk-', toString(number)), if(number % 5 = 1, 'like', 'watch'),
       1 + cityHash64(number, 1) % {_USERS}, 1 + cityHash64(number, 2) % {_VIDEOS} AS video,
       toDateTime({now} - toUInt32((cityHash64(number, 3) % 1000000) / 1e6
           * (cityHash64(number, 4) % 1000000) / 1e6 * {_DAYS * 86_400})),
       toUInt32(number % 1000000), if(number % 5 = 1, NULL, 0.5),
       {first_seq} + number{extra_value}
FROM numbers({start}, {count})"""
                )
    finally:
        client.disconnect()
    store = ClickHouseEventStore(engine)
    store.fold_stats(until=datetime.now(UTC))
    store.close()
    engine.dispose()


def _drive(port: int, database: str, rate: float, seconds: float) -> dict[str, Any]:
    """Write events at ``rate`` a second for ``seconds`` as the service does; the
    latencies in ms by stage."""
    from reelrank_clickhouse import (
        ClickHouseConfig,
        ClickHouseEngagementLog,
        ClickHouseEventStore,
        connect,
    )

    from reelrank import EngagementEvent, GroupCommitEngagementLog, GroupCommitEventStore

    engine = connect(
        ClickHouseConfig(port=port, database=database, send_receive_timeout_seconds=60.0)
    )
    counts = ClickHouseEventStore(engine)
    events = GroupCommitEventStore(counts)
    log = GroupCommitEngagementLog(ClickHouseEngagementLog(engine))
    counts.get_stats([1])  # the held roll-up, as a started service has it
    stages: dict[str, list[float]] = {"append": [], "record": [], "count": [], "event": []}
    draws = random.Random(database)
    picks = [
        (draws.randrange(1, _USERS + 1), draws.randrange(1, _VIDEOS + 1))
        for _ in range(int(rate * seconds))
    ]

    def write(number: int) -> None:
        user, video = picks[number]
        like = number % 5 == 1
        event = EngagementEvent(
            event_id=f"w-{uuid.uuid4().hex}",
            kind="like" if like else "watch",
            user_id=user,
            video_id=video,
            occurred_at=datetime.now(UTC),
            **({} if like else {"completion": 0.5}),
        )
        began = time.perf_counter()
        recorded: list[float] = []

        def record() -> None:
            at = time.perf_counter()
            log.record(event)
            recorded.append(time.perf_counter() - at)

        beside = threading.Thread(target=record)
        beside.start()
        at = time.perf_counter()
        events.append(event, creator_id=1 + video % 50_000)
        stages["append"].append(time.perf_counter() - at)
        beside.join()
        stages["record"].extend(recorded)
        if like:
            at = time.perf_counter()
            counts.get_stats([video])
            stages["count"].append(time.perf_counter() - at)
        stages["event"].append(time.perf_counter() - began)

    with ThreadPoolExecutor(_THREADS) as pool:
        start = time.perf_counter()
        futures = []
        for number in range(len(picks)):
            wait = start + number / rate - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            futures.append(pool.submit(write, number))
        for future in futures:
            future.result()
        achieved = len(picks) / (time.perf_counter() - start)
    counts.close()
    engine.dispose()

    def quantile(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {
        "achieved": achieved,
        **{
            stage: (quantile(values, 0.5), quantile(values, 0.99))
            for stage, values in stages.items()
        },
    }


def _child(role: str, source: str | None, *arguments: str) -> str:
    """Run this file's ``role`` in a child process with ``source`` (an adapter's source
    directory) first on its path; its standard output."""
    env = dict(os.environ)
    if source is not None:
        env["PYTHONPATH"] = os.pathsep.join((source, env.get("PYTHONPATH", "")))
    done = subprocess.run(
        [sys.executable, __file__, role, *arguments],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    return done.stdout


def _statements(server: Any, since: int) -> list[tuple[str, int, float, float, float]]:
    """Per statement of the writes since Unix time ``since``: its text's start, how
    many ran, their mean time (ms), mean rows read and mean CPU time of the server's
    threads (ms, user and system)."""
    server.execute("SYSTEM FLUSH LOGS")
    rows = server.execute(
        f"""SELECT substring(replaceRegexpAll(query, '\\\\s+', ' '), 1, 48) AS head, count(),
       avg(query_duration_ms), avg(read_rows),
       avg(ProfileEvents.Values[indexOf(ProfileEvents.Names, 'UserTimeMicroseconds')]
           + ProfileEvents.Values[indexOf(ProfileEvents.Names, 'SystemTimeMicroseconds')])
           / 1000
FROM system.query_log
WHERE type = 2 AND event_time >= toDateTime({since}) AND query NOT LIKE '%system.%'
  AND query NOT LIKE 'select %' GROUP BY head ORDER BY sum(query_duration_ms) DESC LIMIT 20
FORMAT TSV"""
    )
    found = []
    for line in rows.strip().splitlines():
        head, count, mean_ms, mean_rows, cpu_ms = line.split("\t")
        found.append((head, int(count), float(mean_ms), float(mean_rows), float(cpu_ms)))
    return found


def _merges(server: Any, since: int, database: str) -> list[tuple[str, int, float, float]]:
    """Per table of ``database``: the background merges that ended since Unix time
    ``since``, their total time (ms) and the rows they wrote."""
    server.execute("SYSTEM FLUSH LOGS")
    rows = server.execute(
        f"""SELECT table, count(), sum(duration_ms), sum(rows) FROM system.part_log
WHERE event_type = 2 AND database = '{database}' AND event_time >= toDateTime({since})
GROUP BY table ORDER BY table FORMAT TSV"""
    )
    found = []
    for line in rows.strip().splitlines():
        table, count, total_ms, written = line.split("\t")
        found.append((table, int(count), float(total_ms), float(written)))
    return found


def test_event_writes_at_scale(tmp_path: Path) -> None:
    reelrank_clickhouse = pytest.importorskip("reelrank_clickhouse")
    from reelrank_clickhouse.testing import ClickHouseServer, find_clickhouse_server

    if find_clickhouse_server() is None:
        pytest.skip("clickhouse-server is not installed")
    del reelrank_clickhouse
    baseline = os.environ.get("REELRANK_BENCH_CLICKHOUSE_BASELINE")
    rates = [
        float(rate)
        for rate in os.environ.get(
            "REELRANK_BENCH_WRITE_RATES", "30" if _QUICK else "30,100"
        ).split(",")
    ]
    seconds = float(os.environ.get("REELRANK_BENCH_WRITE_SECONDS", "6" if _QUICK else "20"))
    rounds = int(os.environ.get("REELRANK_BENCH_WRITE_ROUNDS", "1" if _QUICK else "2"))
    codes = {"this tree": None} | ({"baseline": baseline} if baseline else {})
    with ClickHouseServer(
        tmp_path / "clickhouse", query_log=True, extra_config=_PART_LOG
    ) as server:
        port = str(server.tcp_port)
        for size in _SIZES:
            for index, (code, source) in enumerate(codes.items()):
                database = f"writes_{size}_{index}"
                server.execute(f"CREATE DATABASE {database}")
                began = time.perf_counter()
                _child("seed", source, port, database, str(size))
                print(f"seeded {size:,} events for {code} in {time.perf_counter() - began:.0f} s")
        for round_number in range(rounds):
            for size in _SIZES:
                for rate in rates:
                    order = list(codes.items())
                    if round_number % 2:
                        order.reverse()
                    for code, source in order:
                        index = list(codes).index(code)
                        since = int(server.execute("SELECT toUnixTimestamp(now())").strip()) + 1
                        time.sleep(1.1)
                        found = json.loads(
                            _child(
                                "drive",
                                source,
                                port,
                                f"writes_{size}_{index}",
                                str(rate),
                                str(seconds),
                            )
                        )
                        load = " ".join(f"{value:.2f}" for value in os.getloadavg())
                        print(
                            f"\nround {round_number + 1}, {size:,} events, {rate:g} events/s "
                            f"offered ({found['achieved']:.1f} done), {code}, load {load}"
                        )
                        for stage in ("append", "record", "count", "event"):
                            p50, p99 = found[stage]
                            print(f"  {stage:7s} p50 {p50:7.1f} ms  p99 {p99:7.1f} ms")
                        time.sleep(1.1)
                        statements = _statements(server, since)
                        cpu = sum(count * cpu_ms for _, count, _, _, cpu_ms in statements)
                        events = round(rate * seconds)
                        print(f"  server CPU of the statements: {cpu / events:.2f} ms an event")
                        for head, count, mean_ms, mean_rows, cpu_ms in statements:
                            print(
                                f"  {count:5d} x {mean_ms:6.1f} ms {cpu_ms:6.1f} ms CPU "
                                f"{mean_rows:10.0f} rows  {head}"
                            )
                        for table, count, total_ms, written in _merges(
                            server, since, f"writes_{size}_{index}"
                        ):
                            print(
                                f"  merges of {table}: {count}, {total_ms:.0f} ms in all, "
                                f"{written:,.0f} rows written"
                            )


if __name__ == "__main__":
    role, port_text, database, *rest = sys.argv[1:]
    if role == "seed":
        _seed(int(port_text), database, int(rest[0]))
    else:
        print(json.dumps(_drive(int(port_text), database, float(rest[0]), float(rest[1]))))
