"""Developer sessions: ``nox -s tests``, ``nox -s integration``, ``nox -s bench``...

``scripts/test.sh`` runs the same checks in one environment for CI.
"""

from __future__ import annotations

from pathlib import Path

import nox

nox.options.sessions = ["lint", "mypy", "tests", "integration", "docs"]
nox.options.reuse_existing_virtualenvs = True

ROOT = Path(__file__).parent
ADAPTERS = sorted(str(p) for p in (ROOT / "adapters").glob("*/pyproject.toml"))


def _install_adapters(session: nox.Session) -> None:
    for pyproject in ADAPTERS:
        session.install("-e", f"{Path(pyproject).parent}[test]")


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    """Unit tests of the core, on in-memory stores."""
    session.install("-e", ".[frame,test]")
    session.run("pytest", "tests", "-m", "not integration", *session.posargs)


@nox.session(python="3.11")
def nojit(session: nox.Session) -> None:
    """Kernel tests with numba disabled, so coverage sees the kernel lines."""
    session.install("-e", ".[frame,test]", "pytest-cov")
    session.run(
        "pytest",
        "tests",
        "-m",
        "not integration",
        "--cov=reelrank",
        "--cov-report=term-missing",
        *session.posargs,
        env={"NUMBA_DISABLE_JIT": "1"},
    )


@nox.session(python="3.11")
def integration(session: nox.Session) -> None:
    """Every adapter test, and the core tests that need real servers the fixtures start."""
    session.install("-e", ".[frame,test]")
    _install_adapters(session)
    # An adapter's own unit tests (its codec, for one) need the adapter installed, so
    # they run here with its server tests rather than in ``tests``.
    session.run("pytest", *[f"{Path(p).parent}/tests" for p in ADAPTERS], *session.posargs)
    session.run("pytest", "tests", "-m", "integration", *session.posargs)


@nox.session(python="3.11")
def replicated(session: nox.Session) -> None:
    """ClickHouse's replicated mode alone: two ReplicatedMergeTree replicas and a
    ZooKeeper (Debian's ``zookeeper``), a replica killed in the middle of a batch.
    Also part of ``integration``; about 20 s, 40 s on a busy machine."""
    session.install("-e", ".[frame,test]")
    _install_adapters(session)
    session.run(
        "pytest", "adapters/reelrank-clickhouse/tests", "-m", "replicated", *session.posargs
    )


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """ruff (lint and format), then the import contracts of pyproject.toml (the core's
    layers, no cycles, adapters on public names only)."""
    session.install("ruff>=0.17,<0.18", "import-linter>=2.16")
    # lint-imports only reads the sources, so the packages are installed without their
    # dependencies.
    editable = [arg for p in ADAPTERS for arg in ("-e", str(Path(p).parent))]
    session.install("--no-deps", "-e", ".", *editable)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("lint-imports", "--no-cache", "--no-logo")


@nox.session(python="3.11")
def mypy(session: nox.Session) -> None:
    """mypy --strict over the core, every adapter and the example application."""
    session.install("-e", ".[dev]", "mypy")
    _install_adapters(session)
    session.run(
        "mypy",
        "src",
        *[f"{Path(p).parent}/src" for p in ADAPTERS],
        "examples/flask_app/reelrank_example",
    )


@nox.session(python="3.11")
def docs(session: nox.Session) -> None:
    """Sphinx, with warnings as errors."""
    # reelrank.testing, which the reference documents, needs pytest from the test extra.
    session.install("-e", ".[frame,test,docs]")
    _install_adapters(session)
    session.run("sphinx-build", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html")


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    """The full benchmark suite (CI runs it in quick mode)."""
    session.install("-e", ".[frame,test]")
    _install_adapters(session)
    session.run("pytest", "benchmarks", "--benchmark-disable-gc", *session.posargs)


@nox.session(python="3.11")
def demo(session: nox.Session) -> None:
    """A ranked feed for a synthetic catalog, on the embedded in-memory stores."""
    session.install("-e", ".")
    session.run("reelrank", "demo")


@nox.session(python="3.11")
def release(session: nox.Session) -> None:
    """Build, twine-check and smoke-test every sdist and wheel, installed away from the tree.

    scripts/release_check.py builds into dist/, installs by name in a new environment in
    a temporary directory and runs the command and the contract suite there. Set
    REELRANK_REDIS_URL, REELRANK_POSTGRES_URL (a throwaway database) or
    REELRANK_CLICKHOUSE_URL to run the contract suite on real servers as well.
    """
    session.install("build", "twine", "uv")
    session.run("python", "scripts/release_check.py", *session.posargs)


@nox.session(python="3.11")
def image(session: nox.Session) -> None:
    """The container image's build steps without Docker, and the built virtualenv served.

    deploy/docker-build-check.sh builds the wheels, installs them in a fresh virtualenv,
    builds the numba cache, and checks that a process with the pod's copy of the cache
    loads its kernels from it and that gunicorn serves the health checks. A few minutes.
    """
    python = str(Path(session.bin) / "python")
    session.run("bash", "deploy/docker-build-check.sh", env={"PYTHON": python}, external=True)


@nox.session(python="3.11")
def lowest(session: nox.Session) -> None:
    """Unit tests and a quick benchmark on the lowest versions every distribution declares.

    ``uv pip compile --resolution lowest-direct`` pins each declared dependency (of the
    core with its frame and test extras, and of every adapter with its test extra) at its
    lower bound; what those need in turn resolves as usual. Too slow for CI: run it when a
    lower bound changes, and before a release.
    """
    session.install("uv")
    tmp = Path(session.create_tmp())
    spec, pins = tmp / "lowest.in", tmp / "lowest.txt"
    editables = [f"{ROOT}[frame,test]", *(f"{Path(p).parent}[test]" for p in ADAPTERS)]
    spec.write_text("".join(f"-e {editable}\n" for editable in editables))
    session.run(
        "uv", "pip", "compile", "--quiet", "--python-version", "3.11",
        "--resolution", "lowest-direct", str(spec), "-o", str(pins),
    )  # fmt: skip
    session.install("-r", str(pins))
    session.run("pytest", "tests", "-m", "not integration", *session.posargs)
    # The adapters' own unit tests (their codecs, configs) need no server.
    session.run("pytest", *[f"{Path(p).parent}/tests" for p in ADAPTERS], "-m", "not integration")
    session.run(
        "pytest", "benchmarks/bench_scoring.py", "benchmarks/bench_frame.py", "-q",
        "--benchmark-disable-gc", "--benchmark-min-rounds=3", "--benchmark-max-time=0.05",
        env={"REELRANK_BENCH_QUICK": "1"},
    )  # fmt: skip
