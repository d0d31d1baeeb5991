"""A pure-Python build of the kustomize features deploy/k8s uses, for machines without kubectl.

Covered: resources (files and directories), components, configMapGenerator and secretGenerator (literals,
behavior create/merge, content-hash name suffixes and the references to them), namespace, labels (pairs,
includeSelectors, includeTemplates), images, patches (strategic-merge documents with `$patch: delete`, and
JSON 6902 operations, by target kind/group/name/labelSelector) and replacements. Anything else in a
kustomization is an error rather than silently ignored. tests/unit/test_k8s_manifests.py holds its output
to `kubectl kustomize`'s wherever kubectl exists, object for object, except one thing: the name suffix of a
generated ConfigMap or Secret is a content hash here too (so a changed setting still rolls the Deployments),
but not the same characters as kustomize's.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import yaml

SUPPORTED = {
    "apiVersion", "kind", "namespace", "labels", "resources", "components", "configMapGenerator",
    "secretGenerator", "images", "patches", "replacements",
}
GENERATED = "__kustomize_generated__"
CLUSTER_SCOPED = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "GatewayClass"}
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"}


class KustomizeError(ValueError):
    """A kustomization this subset cannot build (or that is wrong)."""


def build(path: Path) -> list[dict[str, Any]]:
    """The objects the kustomization in `path` renders to."""
    objects = _build(path, [])
    _hash_generated(objects)
    return objects


def _load(path: Path) -> dict[str, Any]:
    for name in ("kustomization.yaml", "kustomization.yml", "Kustomization"):
        if (path / name).exists():
            data = yaml.safe_load((path / name).read_text()) or {}
            unknown = set(data) - SUPPORTED
            if unknown:
                raise KustomizeError(f"{path}: unsupported kustomization fields {sorted(unknown)}")
            return dict(data)
    raise KustomizeError(f"{path}: no kustomization.yaml")


def _build(path: Path, objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    k = _load(path)
    for entry in k.get("resources", []):
        target = (path / entry).resolve()
        if target.is_dir():
            objects += _build(target, [])
        else:
            objects += [doc for doc in yaml.safe_load_all(target.read_text()) if doc]
    _generate(k, objects)
    for entry in k.get("components", []):
        objects = _build((path / entry).resolve(), objects)
    _transform(path, k, objects)
    return objects


# --- generators ----------------------------------------------------------------------------------------------


def _generate(k: dict[str, Any], objects: list[dict[str, Any]]) -> None:
    for kind, key in (("ConfigMap", "configMapGenerator"), ("Secret", "secretGenerator")):
        for spec in k.get(key, []):
            unknown = set(spec) - {"name", "literals", "behavior"}
            if unknown:
                raise KustomizeError(f"{key} {spec.get('name')}: unsupported fields {sorted(unknown)}")
            data = dict(literal.split("=", 1) for literal in spec.get("literals", []))
            if kind == "Secret":
                data = {name: base64.b64encode(value.encode()).decode() for name, value in data.items()}
            behavior = spec.get("behavior", "create")
            existing = [o for o in objects if o.get(GENERATED) == spec["name"] and o["kind"] == kind]
            if behavior == "merge":
                if not existing:
                    raise KustomizeError(f"{kind} {spec['name']}: nothing to merge into")
                existing[0].setdefault("data", {}).update(data)
                continue
            if behavior != "create" or existing:
                raise KustomizeError(f"{kind} {spec['name']}: behavior {behavior!r} not supported here")
            obj: dict[str, Any] = {"apiVersion": "v1", "kind": kind, "metadata": {"name": spec["name"]}}
            if kind == "Secret":
                obj["type"] = "Opaque"
            obj["data"] = data
            obj[GENERATED] = spec["name"]
            objects.append(obj)


def _suffix(obj: dict[str, Any]) -> str:
    """A content hash of a generated ConfigMap or Secret, in kustomize's alphabet (not its exact value)."""
    encoded: dict[str, Any] = {"data": obj.get("data", {}), "kind": obj["kind"], "name": obj[GENERATED]}
    if obj["kind"] == "Secret":
        encoded["type"] = obj.get("type", "Opaque")
    text = json.dumps(encoded, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    return digest.translate(str.maketrans("013ae", "ghkmt"))


def _hash_generated(objects: list[dict[str, Any]]) -> None:
    renamed: dict[tuple[str, str], str] = {}
    for obj in objects:
        if GENERATED in obj:
            name = obj.pop(GENERATED)
            new = f"{name}-{_suffix({**obj, GENERATED: name})}"
            renamed[(obj["kind"], name)] = new
            obj["metadata"]["name"] = new
    for obj in objects:
        if obj["kind"] in WORKLOADS:
            _rename_refs(obj["spec"]["template"]["spec"], renamed)


def _rename_refs(pod: dict[str, Any], renamed: dict[tuple[str, str], str]) -> None:
    def swap(ref: dict[str, Any] | None, kind: str, field: str = "name") -> None:
        if ref and (kind, ref.get(field)) in renamed:
            ref[field] = renamed[(kind, ref[field])]

    for container in pod.get("containers", []) + pod.get("initContainers", []):
        for source in container.get("envFrom", []):
            swap(source.get("configMapRef"), "ConfigMap")
            swap(source.get("secretRef"), "Secret")
        for env in container.get("env", []):
            swap(env.get("valueFrom", {}).get("configMapKeyRef"), "ConfigMap")
            swap(env.get("valueFrom", {}).get("secretKeyRef"), "Secret")
    for volume in pod.get("volumes", []):
        swap(volume.get("configMap"), "ConfigMap")
        swap(volume.get("secret"), "Secret", "secretName")


# --- transformers --------------------------------------------------------------------------------------------


def _transform(path: Path, k: dict[str, Any], objects: list[dict[str, Any]]) -> None:
    for patch in k.get("patches", []):
        _patch(path, patch, objects)
    for image in k.get("images", []):
        _image(image, objects)
    if "namespace" in k:
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = k["namespace"]
    for spec in k.get("labels", []):
        for obj in objects:
            _label(obj, spec)
    for replacement in k.get("replacements", []):
        _replace(replacement, objects)


def _label(obj: dict[str, Any], spec: dict[str, Any]) -> None:
    pairs = spec.get("pairs", {})
    obj["metadata"].setdefault("labels", {}).update(pairs)
    if spec.get("includeTemplates") and obj["kind"] in WORKLOADS:
        obj["spec"]["template"].setdefault("metadata", {}).setdefault("labels", {}).update(pairs)
    if spec.get("includeSelectors"):
        raise KustomizeError("labels with includeSelectors are not supported here")


def _image(image: dict[str, Any], objects: list[dict[str, Any]]) -> None:
    for obj in objects:
        if obj["kind"] not in WORKLOADS:
            continue
        pod = obj["spec"]["template"]["spec"]
        for container in pod.get("containers", []) + pod.get("initContainers", []):
            name = re.split(r"[:@]", container.get("image", ""), maxsplit=1)[0]
            if name == image["name"]:
                tag = f":{image['newTag']}" if "newTag" in image else ""
                digest = f"@{image['digest']}" if "digest" in image else ""
                container["image"] = str(image.get("newName", name)) + (digest or tag)


def _selected(obj: dict[str, Any], target: dict[str, Any]) -> bool:
    group = obj["apiVersion"].split("/")[0] if "/" in obj["apiVersion"] else ""
    if "kind" in target and obj["kind"] != target["kind"]:
        return False
    if "group" in target and group != target["group"]:
        return False
    if "name" in target and not re.fullmatch(target["name"], obj["metadata"]["name"]):
        return False
    if "labelSelector" in target:
        labels = obj["metadata"].get("labels", {})
        for term in target["labelSelector"].split(","):
            key, _, value = term.partition("=")
            if labels.get(key.strip()) != value.strip():
                return False
    return True


def _patch(path: Path, patch: dict[str, Any], objects: list[dict[str, Any]]) -> None:
    text = patch.get("patch") if "patch" in patch else (path / patch["path"]).read_text()
    docs = [d for d in yaml.safe_load_all(text) if d is not None]
    if len(docs) == 1 and isinstance(docs[0], list):  # JSON 6902
        targets = [o for o in objects if _selected(o, patch.get("target", {}))]
        for obj in targets:
            for op in docs[0]:
                _json_patch(obj, op)
        return
    for doc in docs:
        target = patch.get("target") or {"kind": doc["kind"], "name": re.escape(doc["metadata"]["name"])}
        matched = [o for o in objects if _selected(o, target)]
        if not matched and "target" not in patch:
            raise KustomizeError(f"patch for {doc['kind']}/{doc['metadata']['name']} matches nothing")
        if doc.get("$patch") == "delete":
            objects[:] = [o for o in objects if o not in matched]
            continue
        for obj in matched:
            _merge(obj, doc)


def _merge(into: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        elif isinstance(value, list):
            raise KustomizeError(f"strategic merge of list field {key!r} is not supported here")
        else:
            into[key] = copy.deepcopy(value)


def _pointer(path: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in path.lstrip("/").split("/")]


def _json_patch(obj: dict[str, Any], op: dict[str, Any]) -> None:
    *parents, last = _pointer(op["path"])
    node: Any = obj
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    kind = op["op"]
    if isinstance(node, list):
        index = len(node) if last == "-" else int(last)
        if kind == "add":
            node.insert(index, copy.deepcopy(op["value"]))
        elif kind == "replace":
            node[index] = copy.deepcopy(op["value"])
        elif kind == "remove":
            del node[index]
        else:
            raise KustomizeError(f"JSON patch op {kind!r} is not supported here")
        return
    if kind in ("add", "replace"):
        if kind == "replace" and last not in node:
            raise KustomizeError(f"replace of missing {op['path']}")
        node[last] = copy.deepcopy(op["value"])
    elif kind == "remove":
        del node[last]
    else:
        raise KustomizeError(f"JSON patch op {kind!r} is not supported here")


def _field_nodes(node: Any, parts: list[str]) -> list[tuple[Any, str]]:
    """(parent, key) of every node a kustomize field path (`a.b.[k=v].c`) reaches."""
    if len(parts) == 1:
        return [(node, parts[0])]
    head, rest = parts[0], parts[1:]
    selector = re.fullmatch(r"\[(.+)=(.*)\]", head)
    if selector:
        key, value = selector.groups()
        return [hit for item in node if item.get(key) == value for hit in _field_nodes(item, rest)]
    return _field_nodes(node[head], rest) if head in node else []


def _replace(replacement: dict[str, Any], objects: list[dict[str, Any]]) -> None:
    source = replacement["source"]
    candidates = [
        o for o in objects
        if o["kind"] == source["kind"] and (o.get(GENERATED) or o["metadata"]["name"]) == source["name"]
    ]
    if len(candidates) != 1:
        raise KustomizeError(f"replacement source {source['kind']}/{source['name']}: {len(candidates)} matches")
    ((parent, key),) = _field_nodes(candidates[0], source["fieldPath"].split("."))
    value = parent[key]
    for target in replacement["targets"]:
        for obj in objects:
            if not _selected(obj, target["select"]):
                continue
            for path in target["fieldPaths"]:
                for parent, key in _field_nodes(obj, path.split(".")):
                    parent[key] = value
