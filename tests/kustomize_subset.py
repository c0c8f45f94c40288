"""Renders the kustomizations in ``deploy/k8s`` without the kustomize binary.

Neither kubectl nor kustomize is installed here, and the PyPI package named
``kustomize`` builds manifests in Python rather than rendering a kustomization, so this
module implements the part of kustomize those files use, and refuses anything else (a
field it does not know raises :class:`UnsupportedKustomization`, so a manifest never
renders differently here than with kustomize without the test noticing):

- ``resources``: files, and directories holding a ``kustomization.yaml``;
- ``namespace``: set on every resource;
- ``images``: ``name`` matched against each container's and init container's image
  (without tag or digest) of a workload's pod template (a CronJob's under its job
  template), replaced by ``newName`` / ``newTag`` / ``digest``;
- ``patches`` from a ``path``:
  - a YAML list is a JSON 6902 patch, applied with the ``jsonpatch`` library to the
    resources its ``target`` (group, version, kind, name) selects;
  - a mapping is a strategic-merge patch on the resource of its kind and name:
    mappings merge key by key, ``null`` deletes a key, ``$patch: delete`` at the top
    deletes the resource, and lists of mappings merge item by item on the Kubernetes
    merge key of that list (``name`` for containers, init containers, env and volumes;
    ``mountPath`` for volume mounts; ``containerPort`` for ports); other lists are
    replaced.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonpatch
import yaml

KNOWN_FIELDS = {"apiVersion", "kind", "resources", "namespace", "images", "patches"}
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
}


class UnsupportedKustomization(ValueError):
    """The kustomization uses a field or form this renderer does not implement."""


def render(directory: Path) -> list[dict[str, Any]]:
    """The resources ``kustomize build directory`` would output, in input order."""
    spec = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(spec) - KNOWN_FIELDS
    if unknown:
        raise UnsupportedKustomization(f"{directory}: {sorted(unknown)}")
    resources: list[dict[str, Any]] = []
    for entry in spec.get("resources", []):
        path = (directory / entry).resolve()
        if path.is_dir():
            resources += render(path)
        else:
            resources += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    for patch in spec.get("patches", []):
        if set(patch) - {"path", "target"}:
            raise UnsupportedKustomization(f"{directory}: patch fields {sorted(patch)}")
        body = yaml.safe_load((directory / patch["path"]).read_text())
        if isinstance(body, list):
            resources = _json6902(resources, body, patch["target"])
        else:
            resources = _strategic_merge(resources, body)
    for image in spec.get("images", []):
        for resource in resources:
            _set_image(resource, image)
    if "namespace" in spec:
        for resource in resources:
            resource["metadata"]["namespace"] = spec["namespace"]
    return resources


def _selects(resource: dict[str, Any], target: dict[str, str]) -> bool:
    group, _, version = resource["apiVersion"].rpartition("/")
    wanted = {
        "group": group,
        "version": version,
        "kind": resource["kind"],
        "name": resource["metadata"]["name"],
    }
    if set(target) - set(wanted):
        raise UnsupportedKustomization(f"target fields {sorted(target)}")
    return all(wanted[key] == value for key, value in target.items())


def _json6902(
    resources: list[dict[str, Any]], operations: list[dict[str, Any]], target: dict[str, str]
) -> list[dict[str, Any]]:
    matched = [r for r in resources if _selects(r, target)]
    if not matched:
        raise UnsupportedKustomization(f"no resource matches the target {target}")
    patch = jsonpatch.JsonPatch(operations)
    return [patch.apply(r) if r in matched else r for r in resources]


def _strategic_merge(
    resources: list[dict[str, Any]], patch: dict[str, Any]
) -> list[dict[str, Any]]:
    key = (patch["kind"], patch["metadata"]["name"])
    if not any((r["kind"], r["metadata"]["name"]) == key for r in resources):
        raise UnsupportedKustomization(f"no resource for the patch of {key}")
    delete = patch.get("$patch") == "delete"
    out = []
    for resource in resources:
        if (resource["kind"], resource["metadata"]["name"]) != key:
            out.append(resource)
        elif not delete:
            out.append(_merge(resource, {k: v for k, v in patch.items() if k != "$patch"}, ""))
    return out


def _merge(base: Any, patch: Any, field: str) -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = copy.deepcopy(base)
        for key, value in patch.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = _merge(base.get(key), value, key)
        return merged
    if isinstance(base, list) and isinstance(patch, list) and field in MERGE_KEYS:
        merge_key = MERGE_KEYS[field]
        merged_list = copy.deepcopy(base)
        for item in patch:
            for index, existing in enumerate(merged_list):
                if existing.get(merge_key) == item[merge_key]:
                    merged_list[index] = _merge(existing, item, "")
                    break
            else:
                merged_list.append(copy.deepcopy(item))
        return merged_list
    return copy.deepcopy(patch)


def _set_image(resource: dict[str, Any], image: dict[str, str]) -> None:
    if set(image) - {"name", "newName", "newTag", "digest"}:
        raise UnsupportedKustomization(f"image fields {sorted(image)}")
    spec = resource.get("spec", {})
    if resource.get("kind") == "CronJob":
        spec = spec.get("jobTemplate", {}).get("spec", {})
    pod = spec.get("template", {}).get("spec", {})
    for container in pod.get("containers", []) + pod.get("initContainers", []):
        reference = container["image"]
        name = reference.split("@")[0]
        if ":" in name.rsplit("/", 1)[-1]:
            name = name.rsplit(":", 1)[0]
        if name != image["name"]:
            continue
        new = image.get("newName", name)
        if "digest" in image:
            container["image"] = f"{new}@{image['digest']}"
        elif "newTag" in image:
            container["image"] = f"{new}:{image['newTag']}"
        else:
            container["image"] = reference.replace(name, new, 1)
