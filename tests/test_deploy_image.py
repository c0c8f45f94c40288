"""Static checks of ``deploy/Dockerfile`` against the files it uses and the pods that
run it. Docker is not available here: ``deploy/docker-build-check.sh`` (``nox -s
image``) runs the build steps themselves; see docs/operate/deployment.md."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "deploy" / "Dockerfile").read_text()
INSTRUCTIONS = [
    line.strip()
    for line in DOCKERFILE.replace("\\\n", " ").splitlines()
    if line.strip() and not line.lstrip().startswith("#")
]


def _instructions(keyword: str) -> list[str]:
    prefix = keyword + " "
    return [line[len(prefix) :].strip() for line in INSTRUCTIONS if line.startswith(prefix)]


def _env() -> dict[str, str]:
    env = {}
    for line in _instructions("ENV"):
        env.update(re.findall(r"(\w+)=(\S+)", line))
    return env


def _pod() -> dict:
    return yaml.safe_load((ROOT / "deploy" / "k8s" / "base" / "deployment.yaml").read_text())[
        "spec"
    ]["template"]["spec"]


def test_two_stages_and_the_runtime_installs_from_the_builders_wheels() -> None:
    stages = _instructions("FROM")
    assert [stage.split()[-1] for stage in stages] == ["builder", "runtime"]
    runs = " ".join(_instructions("RUN"))
    assert "from=builder,source=/wheels" in runs


def test_every_build_step_is_a_subcommand_of_image_build_sh() -> None:
    script = (ROOT / "deploy" / "image-build.sh").read_text()
    subcommands = set(re.findall(r"^(\S+)\)$", script, flags=re.MULTILINE)) - {"*"}
    used = re.findall(r"image-build\.sh (\S+)", " ".join(_instructions("RUN")))
    assert used == ["wheels", "install", "numba-cache"]
    assert set(used) <= subcommands
    for script_name in ("image-build.sh", "docker-build-check.sh"):
        subprocess.run(["bash", "-n", str(ROOT / "deploy" / script_name)], check=True)


def test_runs_as_the_pods_non_root_user() -> None:
    [user] = _instructions("USER")
    uid, gid = (int(part) for part in user.split(":"))
    context = _pod()["securityContext"]
    assert uid != 0
    assert (uid, gid) == (context["runAsUser"], context["runAsGroup"])


def test_the_numba_cache_is_built_where_the_init_container_copies_it_from() -> None:
    env = _env()
    cache = env["NUMBA_CACHE_DIR"]
    assert env["NUMBA_THREADING_LAYER"] == "omp"
    [init] = _pod()["initContainers"]
    assert init["command"][:3] == ["cp", "-a", f"{cache}/."]
    main = _pod()["containers"][0]
    pod_cache = next(item["value"] for item in main["env"] if item["name"] == "NUMBA_CACHE_DIR")
    assert init["command"][3].rstrip("/") == pod_cache
    assert "libgomp1" in " ".join(_instructions("RUN"))


def test_serves_with_gunicorn_and_checks_liveness() -> None:
    [cmd] = _instructions("CMD")
    assert json.loads(cmd) == ["gunicorn", "-c", "/opt/reelrank/gunicorn.conf.py"]
    assert "deploy/gunicorn.conf.py /opt/reelrank/gunicorn.conf.py" in _instructions("COPY")
    [healthcheck] = _instructions("HEALTHCHECK")
    assert "/healthz/live" in healthcheck
    assert _env()["REELRANK_HOST"] == "0.0.0.0"


def test_the_dockerignore_lets_through_what_the_build_copies() -> None:
    allowed = {
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    assert {"deploy/image-build.sh", "deploy/gunicorn.conf.py", "src", "pyproject.toml"} <= allowed
    for directory in ("adapters", "examples/flask_app"):
        assert directory in allowed
