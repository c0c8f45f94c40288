"""The Kubernetes manifests in ``deploy/k8s``: the base and the production overlay,
rendered with :mod:`kustomize_subset` and validated offline against the Kubernetes
JSON schemas of one pinned release (``kubernetes-validate``, strict: unknown fields
fail)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kustomize_subset import UnsupportedKustomization, render

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.33.0"
BASE = K8S / "base"
PRODUCTION = K8S / "overlays" / "production"
PROBES = {
    "startupProbe": "/healthz/startup",
    "livenessProbe": "/healthz/live",
    "readinessProbe": "/healthz/ready",
}


def _one(resources: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    matches = [r for r in resources if r["kind"] == kind]
    assert len(matches) == 1, kind
    return matches[0]


@pytest.fixture(params=[BASE, PRODUCTION], ids=["base", "production"])
def rendered(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return render(request.param)


def test_every_resource_validates_against_the_kubernetes_schemas(
    rendered: list[dict[str, Any]],
) -> None:
    for resource in rendered:
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)


def test_a_schema_violation_is_caught() -> None:
    deployment = _one(render(BASE), "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limit"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_the_autoscaler_keeps_3_to_10_replicas_of_the_deployment(
    rendered: list[dict[str, Any]],
) -> None:
    hpa = _one(rendered, "HorizontalPodAutoscaler")
    deployment = _one(rendered, "Deployment")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 10)
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert 3 <= deployment["spec"].get("replicas", 3) <= 10


def test_the_disruption_budget_and_the_service_select_the_deployments_pods(
    rendered: list[dict[str, Any]],
) -> None:
    deployment = _one(rendered, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()
    pdb = _one(rendered, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    # With the autoscaler's minimum of 3, a drain still leaves 2 pods serving.
    assert pdb["spec"]["maxUnavailable"] == 1
    service = _one(rendered, "Service")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert service["spec"]["ports"][0]["targetPort"] in {
        port["name"] for port in container["ports"]
    }


def test_the_probes_hit_the_three_health_paths(rendered: list[dict[str, Any]]) -> None:
    container = _one(rendered, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    for probe, path in PROBES.items():
        assert container[probe]["httpGet"]["path"] == path
        assert container[probe]["httpGet"]["port"] == "http"


def test_the_probe_paths_are_routes_of_the_service() -> None:
    from reelrank_example._api import OPERATIONS

    paths = {operation.path for operation in OPERATIONS}
    assert set(PROBES.values()) <= paths


def test_containers_run_as_non_root_on_a_read_only_root_filesystem(
    rendered: list[dict[str, Any]],
) -> None:
    pod = _one(rendered, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    mounts_needed = {"/var/cache/reelrank/numba", "/var/run/reelrank/metrics"}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    for container in pod["containers"] + pod["initContainers"]:
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True, container["name"]
        assert context["allowPrivilegeEscalation"] is False, container["name"]
        assert context["capabilities"]["drop"] == ["ALL"], container["name"]
        limits, requests = container["resources"]["limits"], container["resources"]["requests"]
        assert {"cpu", "memory"} <= set(limits) and {"cpu", "memory"} <= set(requests)
        for mount in container["volumeMounts"]:
            assert "emptyDir" in volumes[mount["name"]], mount
    main = pod["containers"][0]
    env = {item["name"]: item for item in main["env"]}
    mounted = {mount["mountPath"] for mount in main["volumeMounts"]}
    assert mounts_needed <= mounted
    assert env["NUMBA_CACHE_DIR"]["value"] in mounted
    assert env["PROMETHEUS_MULTIPROC_DIR"]["value"] in mounted


def test_settings_come_from_the_configmap_and_the_auth_key_from_a_secret(
    rendered: list[dict[str, Any]],
) -> None:
    container = _one(rendered, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    config = _one(rendered, "ConfigMap")
    assert container["envFrom"] == [{"configMapRef": {"name": config["metadata"]["name"]}}]
    env = {item["name"]: item for item in container["env"]}
    secret_ref = env["REELRANK_AUTH_SECRET"]["valueFrom"]["secretKeyRef"]
    assert secret_ref["name"] == "reelrank-secrets"
    # Nothing secret sits in the ConfigMap.
    assert not {"REELRANK_AUTH_SECRET", "REELRANK_DATABASE_URL"} & set(config["data"])


def test_the_production_overlay_changes_what_it_says() -> None:
    base, production = render(BASE), render(PRODUCTION)
    assert {r["metadata"].get("namespace") for r in production} == {"reelrank"}
    # The placeholder Secret is never applied over the real one.
    assert "Secret" in {r["kind"] for r in base}
    assert "Secret" not in {r["kind"] for r in production}
    base_pod = _one(base, "Deployment")["spec"]["template"]["spec"]
    pod = _one(production, "Deployment")["spec"]["template"]["spec"]
    assert "replicas" not in _one(production, "Deployment")["spec"]
    assert base_pod["containers"][0]["image"] == "reelrank-service"
    assert pod["containers"][0]["image"] == "ghcr.io/reelrank/reelrank-service:0.1.0"
    assert pod["initContainers"][0]["image"] == pod["containers"][0]["image"]
    assert pod["containers"][0]["resources"]["requests"] == {"cpu": "1", "memory": "1Gi"}
    # The merge kept everything else of the container.
    assert pod["containers"][0]["env"] == base_pod["containers"][0]["env"]
    assert pod["containers"][0]["startupProbe"] == base_pod["containers"][0]["startupProbe"]
    data = _one(production, "ConfigMap")["data"]
    assert data["REELRANK_REDIS_URL"] == "redis://redis-master.data.svc.cluster.local:6379/0"
    assert data["REELRANK_WORKERS"] == _one(base, "ConfigMap")["data"]["REELRANK_WORKERS"]


def test_the_renderer_merges_lists_on_their_keys_and_refuses_what_it_does_not_know(
    tmp_path: Path,
) -> None:
    base = tmp_path / "base"
    base.mkdir()
    (base / "kustomization.yaml").write_text(yaml.safe_dump({"resources": ["pod.yaml"]}))
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "labels": {"a": "1", "b": "2"}},
        "spec": {
            "containers": [
                {"name": "one", "image": "x:1", "env": [{"name": "A", "value": "1"}]},
                {"name": "two", "image": "y@sha256:00", "args": ["--a", "--b"]},
            ]
        },
    }
    (base / "pod.yaml").write_text(yaml.safe_dump(pod))
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    patch = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "labels": {"b": None}},
        "spec": {
            "containers": [
                {"name": "two", "args": ["--c"], "env": [{"name": "B", "value": "2"}]},
                {"name": "one", "env": [{"name": "A", "value": "3"}]},
            ]
        },
    }
    (overlay / "patch.yaml").write_text(yaml.safe_dump(patch))
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump({"resources": ["../base"], "patches": [{"path": "patch.yaml"}]})
    )
    [out] = render(overlay)
    assert out["metadata"]["labels"] == {"a": "1"}
    assert out["spec"]["containers"] == [
        {"name": "one", "image": "x:1", "env": [{"name": "A", "value": "3"}]},
        {
            "name": "two",
            "image": "y@sha256:00",
            "args": ["--c"],
            "env": [{"name": "B", "value": "2"}],
        },
    ]
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump({"resources": ["../base"], "commonLabels": {"c": "3"}})
    )
    with pytest.raises(UnsupportedKustomization, match="commonLabels"):
        render(overlay)


def test_the_grace_period_covers_the_pre_stop_sleep_and_gunicorns_drain(
    rendered: list[dict[str, Any]],
) -> None:
    pod = _one(rendered, "Deployment")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    graceful = int(_one(rendered, "ConfigMap")["data"]["REELRANK_GRACEFUL_TIMEOUT"])
    assert int(command[1]) + graceful < pod["terminationGracePeriodSeconds"]


def test_a_cronjob_folds_the_statistics_one_run_at_a_time(rendered: list[dict[str, Any]]) -> None:
    from reelrank_example.__main__ import main

    cronjob = _one(rendered, "CronJob")
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    job = cronjob["spec"]["jobTemplate"]["spec"]
    assert job["activeDeadlineSeconds"] > 0
    pod = job["template"]["spec"]
    [container] = pod["containers"]
    command = container["command"]
    assert command[:3] == ["python", "-m", "reelrank_example"]
    # The command is one the service's CLI knows (argparse exits 2 on an unknown one).
    with pytest.raises(SystemExit) as caught:
        main([*command[3:], "--help"])
    assert caught.value.code == 0
    deployment = _one(rendered, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    # Same image, settings and secrets as the service.
    assert container["image"] == deployment["image"]
    assert container["envFrom"] == deployment["envFrom"]
    env = {item["name"]: item for item in container["env"]}
    service_env = {item["name"]: item for item in deployment["env"]}
    for name in ("REELRANK_CLICKHOUSE_URL", "REELRANK_DATABASE_URL", "REELRANK_AUTH_SECRET"):
        assert env[name] == service_env[name], name
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True and pod["securityContext"]["runAsNonRoot"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert all("emptyDir" in volumes[mount["name"]] for mount in container["volumeMounts"])
    assert env["NUMBA_CACHE_DIR"]["value"].startswith(container["volumeMounts"][0]["mountPath"])
