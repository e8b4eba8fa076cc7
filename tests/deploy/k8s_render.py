"""A small kustomize for the tests: what ``kubectl kustomize`` does with our kustomizations.

Covers the features deploy/k8s uses: ``resources`` (files and directories), a
``configMapGenerator`` with literals (no hash suffix), ``images`` (``newName``/``newTag``),
``labels`` (metadata only) and strategic-merge ``patches`` (mappings merged, lists of named
items merged by ``name``, other lists replaced). A patch whose target does not exist fails.
Checked by hand against kubectl kustomize (v5.5.0): the same objects, but for the generated
ConfigMap's hash suffix.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}


def load_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def render(directory: Path) -> list[dict[str, Any]]:
    """The objects a kustomization directory produces."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    objects: list[dict[str, Any]] = []
    for entry in kustomization.get("resources", []):
        path = (directory / entry).resolve()
        objects += render(path) if path.is_dir() else load_documents(path)
    for generator in kustomization.get("configMapGenerator", []):
        data = dict(literal.split("=", 1) for literal in generator.get("literals", []))
        meta = {"name": generator["name"]}
        objects.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data})
    for patch in kustomization.get("patches", []):
        body = yaml.safe_load((directory / patch["path"]).read_text())
        target = find(objects, body["kind"], body["metadata"]["name"])
        merged = strategic_merge(target, body)
        target.clear()
        target.update(merged)
    for image in kustomization.get("images", []):
        for container in containers(objects, init=True):
            name, _, tag = container["image"].partition(":")
            if name == image["name"]:
                tag = image.get("newTag", tag)
                container["image"] = image.get("newName", name) + (f":{tag}" if tag else "")
    for label in kustomization.get("labels", []):
        for obj in objects:
            obj["metadata"].setdefault("labels", {}).update(label["pairs"])
    return objects


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"{len(matches)} objects {kind}/{name}"
    return matches[0]


def containers(objects: list[dict[str, Any]], *, init: bool = False) -> list[dict[str, Any]]:
    """Every container (and init container) of every workload."""
    found = []
    for obj in objects:
        if obj["kind"] in WORKLOADS:
            spec = obj["spec"]["template"]["spec"]
            found += spec["containers"] + (spec.get("initContainers", []) if init else [])
    return found


def strategic_merge(base: Any, patch: Any) -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = copy.deepcopy(base)
        for key, value in patch.items():
            merged[key] = strategic_merge(base[key], value) if key in base else value
        return merged
    if isinstance(base, list) and isinstance(patch, list) and _named(base) and _named(patch):
        merged = [copy.deepcopy(item) for item in base]
        added = []  # kustomize puts a patch's new items first
        for item in patch:
            same = [i for i, old in enumerate(merged) if old["name"] == item["name"]]
            if same:
                merged[same[0]] = strategic_merge(merged[same[0]], item)
            else:
                added.append(item)
        return added + merged
    return patch


def _named(items: list[Any]) -> bool:
    return all(isinstance(i, dict) and "name" in i for i in items)
