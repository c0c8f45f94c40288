"""Build every distribution and check it works where users get it: away from this tree.

1. ``python -m build`` makes an sdist of the core and of every adapter into ``dist/``,
   then a wheel from each sdist, so a file missing from an sdist fails the build.
2. ``twine check --strict`` checks what the package index would render and refuse.
3. Every sdist and wheel is checked to carry the license, every wheel its ``py.typed``.
4. A new virtual environment in a temporary directory gets the core (with its ``frame``
   extra) and every adapter (with its ``test`` extra, for pytest) by name, with
   ``--find-links dist``: dependencies come from the package index (installed by uv,
   which takes seconds where pip takes a minute). Then the reelrank
   distributions are reinstalled from ``dist/`` alone (``--no-index``), so whatever
   the index holds under the same names, the files tested are the files built here.
5. From an empty working directory, with no ``PYTHONPATH``: ``reelrank --version``,
   ``reelrank demo``, ``reelrank score`` on a CSV file written here, and the contract
   suite (``scripts/release_contracts.py``) against the installed stores; on real servers
   too when ``REELRANK_REDIS_URL``, ``REELRANK_POSTGRES_URL`` or ``REELRANK_CLICKHOUSE_URL``
   is set.

Run it with the Python of a development environment that has ``build``, ``twine`` and
``uv`` (the ``dev`` extra; ``nox -s release`` and ``scripts/test.sh`` use it).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROJECTS = [ROOT, *sorted(p.parent for p in (ROOT / "adapters").glob("*/pyproject.toml"))]
NOW = "2026-01-15T12:00:00Z"


class ReleaseCheckError(RuntimeError):
    """A built artifact, or the environment installed from them, is not what users need."""


def _step(title: str) -> float:
    print(f"\n--> {title}", flush=True)
    return time.perf_counter()


def _done(started: float) -> None:
    print(f"    ({time.perf_counter() - started:.1f} s)", flush=True)


def _run(command: list[str | Path], **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run a command, and on failure show what it printed before stopping."""
    result = subprocess.run(
        [str(part) for part in command],
        text=True,
        capture_output=True,
        check=False,
        **kwargs,  # type: ignore[arg-type]
    )
    if result.returncode != 0:
        sys.stdout.write(result.stdout)
        sys.stderr.write(result.stderr)
        raise ReleaseCheckError(f"exit status {result.returncode}: {' '.join(map(str, command))}")
    return result


def _project_name(project: Path) -> str:
    with (project / "pyproject.toml").open("rb") as file:
        name: str = tomllib.load(file)["project"]["name"]
    return name


def build(dist: Path) -> dict[str, tuple[Path, Path]]:
    """Build every project; return its name -> (sdist, wheel)."""
    shutil.rmtree(dist, ignore_errors=True)
    dist.mkdir(parents=True)
    built: dict[str, tuple[Path, Path]] = {}
    for project in PROJECTS:
        name = _project_name(project)
        # No --sdist/--wheel: build makes the sdist, then the wheel from the unpacked
        # sdist, which is how a user without a wheel for their platform would get it.
        _run([sys.executable, "-m", "build", "--outdir", dist, project])
        stem = name.replace("-", "_")
        sdists = sorted(dist.glob(f"{stem}-*.tar.gz"))
        wheels = sorted(dist.glob(f"{stem}-*-py3-none-any.whl"))
        if len(sdists) != 1 or len(wheels) != 1:
            raise ReleaseCheckError(f"{name}: expected one sdist and one wheel in {dist}")
        built[name] = (sdists[0], wheels[0])
        print(f"    {sdists[0].name}  {wheels[0].name}")
    return built


# Directories of local state that must never ship: hatchling leaves out what the root
# .gitignore lists, so a tool cache missing from it would land in the sdist.
LOCAL_STATE = {
    ".venv", ".nox", ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis",
    ".benchmarks", ".numba_cache", ".import_linter_cache", "__pycache__", "_vendor", "_build",
    "node_modules", "dist",
}  # fmt: skip


def check_contents(built: dict[str, tuple[Path, Path]]) -> None:
    """Every artifact carries the Apache-2.0 text and no local state; every wheel is typed."""
    license_digest = hashlib.sha256((ROOT / "LICENSE").read_bytes()).hexdigest()
    for name, (sdist, wheel) in built.items():
        with tarfile.open(sdist) as archive:
            stray = sorted(
                m.name for m in archive.getmembers() if LOCAL_STATE & set(m.name.split("/")[1:-1])
            )
            if stray:
                raise ReleaseCheckError(f"{sdist.name} carries local state: {stray[:5]}")
            licenses = [m for m in archive.getmembers() if m.name.endswith("/LICENSE")]
            if not licenses:
                raise ReleaseCheckError(f"{sdist.name} has no LICENSE")
            text = archive.extractfile(licenses[0])
            assert text is not None
            if hashlib.sha256(text.read()).hexdigest() != license_digest:
                raise ReleaseCheckError(f"{sdist.name}: its LICENSE differs from the root one")
        with zipfile.ZipFile(wheel) as archive:
            files = archive.namelist()
        if not any(f.endswith(".dist-info/licenses/LICENSE") for f in files):
            raise ReleaseCheckError(f"{wheel.name} has no license file in its dist-info")
        package = name.replace("-", "_")
        if f"{package}/py.typed" not in files:
            raise ReleaseCheckError(f"{wheel.name} lacks {package}/py.typed")


def _make_venv(directory: Path) -> Path:
    # The interpreter running this script, not a development environment's packages:
    # the new environment starts empty.
    _run([_uv(), "venv", "-q", "--python", sys.executable, directory])
    return directory / "bin" / "python"


def _uv() -> str:
    """uv, which installs the environment in seconds where pip takes a minute."""
    search = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    found = shutil.which("uv", path=search)
    if found is None:
        raise ReleaseCheckError("uv is not installed: pip install uv (the dev extra has it)")
    return found


def install(python: Path, dist: Path, built: dict[str, tuple[Path, Path]]) -> None:
    """Install every distribution by name, its dependencies from the index."""
    version = {name: wheel.name.split("-")[1] for name, (_, wheel) in built.items()}
    extras = {"reelrank": "[frame]"}
    requirements = [f"{name}{extras.get(name, '[test]')}=={version[name]}" for name in built]
    uv_pip = [_uv(), "pip", "install", "-q", "--python", python]
    _run([*uv_pip, "--find-links", dist, *requirements])
    pinned = [f"{name}=={version[name]}" for name in built]
    _run([*uv_pip, "--no-index", "--find-links", dist, "--no-deps", "--reinstall", *pinned])


def _write_catalog(path: Path) -> None:
    """Two videos alike but for their age, and one with a model score."""
    rows = [
        ["video_id", "creator_id", "published_at", "views", "completion_sum", "likes",
         "shares", "comments", "dl_score", "note"],
        [1, 10, "2026-01-15T11:00:00Z", 100, 60, 10, 2, 3, "", "fresh"],
        [2, 10, "2025-12-01T11:00:00Z", 100, 60, 10, 2, 3, "", "old"],
        [3, 11, "2026-01-14T12:00:00Z", 0, 0, 0, 0, 0, 0.9, "new upload"],
    ]  # fmt: skip
    with path.open("w", newline="") as file:
        csv.writer(file).writerows(rows)


def _check_scored(path: Path) -> None:
    with path.open(newline="") as file:
        scored = list(csv.DictReader(file))
    if [row["note"] for row in scored] != ["fresh", "old", "new upload"]:
        raise ReleaseCheckError(f"reelrank score changed the rows: {scored}")
    parts = ("freshness", "completion", "engagement", "affinity", "deep_learning")
    for row in scored:
        score = float(row["score"])
        if not 0.0 <= score <= 1.0 or abs(sum(float(row[p]) for p in parts) - score) > 1e-5:
            raise ReleaseCheckError(f"reelrank score wrote an inconsistent row: {row}")
    if not float(scored[0]["score"]) > float(scored[1]["score"]):
        raise ReleaseCheckError("reelrank score ranked the older of two equal videos higher")


def smoke(python: Path, work: Path, version: str) -> None:
    """The command and the contract suite, from an empty directory outside the tree."""
    bin_dir = python.parent
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        NUMBA_CACHE_DIR=str(work / "numba_cache"),
        PYTHONDONTWRITEBYTECODE="1",
    )
    where = _run(
        [python, "-c", "import reelrank, reelrank_postgres; print(reelrank.__file__)"],
        cwd=work,
        env=env,
    ).stdout.strip()
    if not Path(where).is_relative_to(bin_dir.parent) or Path(where).is_relative_to(ROOT):
        raise ReleaseCheckError(f"reelrank was imported from {where}, not the new environment")
    shown = _run([bin_dir / "reelrank", "--version"], cwd=work, env=env).stdout
    if version not in shown:
        raise ReleaseCheckError(f"reelrank --version printed {shown!r}, expected {version}")
    demo = _run([bin_dir / "reelrank", "demo"], cwd=work, env=env).stdout
    print("    reelrank demo: " + (demo.splitlines() or ["(no output)"])[0])
    _write_catalog(work / "videos.csv")
    _run(
        [bin_dir / "reelrank", "score", "videos.csv", "scored.csv", "--now", NOW, "-q"],
        cwd=work,
        env=env,
    )
    _check_scored(work / "scored.csv")
    shutil.copy(ROOT / "scripts" / "release_contracts.py", work / "test_release_contracts.py")
    contracts = _run(
        [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--strict-markers",
         "-o", "markers=slow: waits in real time", "--rootdir", work,
         "test_release_contracts.py"],
        cwd=work,
        env=env,
    )  # fmt: skip
    print("    contract suite: " + contracts.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dist", type=Path, default=ROOT / "dist", help="where to build")
    parser.add_argument("--keep", action="store_true", help="keep the temporary environment")
    args = parser.parse_args(argv)
    dist: Path = args.dist.resolve()
    total = time.perf_counter()

    started = _step(f"build sdists and wheels of {len(PROJECTS)} distributions into {dist}")
    built = build(dist)
    _done(started)

    started = _step("twine check --strict, and the license and py.typed in every artifact")
    _run([sys.executable, "-m", "twine", "check", "--strict", *sorted(dist.iterdir())])
    check_contents(built)
    _done(started)

    scratch = Path(tempfile.mkdtemp(prefix="reelrank-release-"))
    try:
        started = _step(f"install by name from {dist.name}/ into a new environment in {scratch}")
        python = _make_venv(scratch / "venv")
        install(python, dist, built)
        _done(started)

        started = _step("smoke test from an empty directory: version, demo, score, contracts")
        work = scratch / "work"
        work.mkdir()
        smoke(python, work, built["reelrank"][1].name.split("-")[1])
        _done(started)
    finally:
        if args.keep:
            print(f"    kept {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    print(f"\nrelease check passed in {time.perf_counter() - total:.1f} s")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ReleaseCheckError as error:
        print(f"release check failed: {error}", file=sys.stderr)
        sys.exit(1)
