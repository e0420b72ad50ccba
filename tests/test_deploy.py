"""The Kubernetes manifests under deploy/ and docker-compose.yml: they parse and say what the service needs."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"


def manifest_files() -> list[Path]:
    """Every YAML file under deploy/, sorted."""
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml"))


def documents() -> list[tuple[Path, dict[str, Any]]]:
    """Every non-empty YAML document under deploy/ with the file it came from."""
    out = []
    for path in manifest_files():
        with path.open() as f:
            out += [(path, doc) for doc in yaml.safe_load_all(f) if doc is not None]
    return out


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in documents() if doc.get("kind") == kind]


def rayservice() -> dict[str, Any]:
    found = of_kind("RayService")
    assert len(found) == 1, f"deploy/ must hold exactly one RayService, found {len(found)}"
    return found[0]


def ray_groups() -> list[tuple[str, dict[str, Any]]]:
    """(name, group spec) for the head group and every worker group of the RayService."""
    cluster = rayservice()["spec"]["rayClusterConfig"]
    groups = [("head", cluster["headGroupSpec"])]
    groups += [(g.get("groupName", "?"), g) for g in cluster.get("workerGroupSpecs") or []]
    return groups


def pod_specs(node: Any) -> Iterator[dict[str, Any]]:
    """Every pod spec (a mapping with a `containers` list) anywhere inside a document."""
    if isinstance(node, dict):
        if isinstance(node.get("containers"), list):
            yield node
        for value in node.values():
            yield from pod_specs(value)
    elif isinstance(node, list):
        for item in node:
            yield from pod_specs(item)


def containers(node: Any) -> list[dict[str, Any]]:
    return [c for spec in pod_specs(node) for c in spec["containers"] + (spec.get("initContainers") or [])]


def env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env") or []}


def ray_containers() -> list[tuple[str, dict[str, Any]]]:
    return [(name, c) for name, group in ray_groups() for c in containers(group["template"])]


def test_every_document_parses_and_names_itself() -> None:
    assert (DEPLOY / "rayservice.yaml").is_file(), "deploy/rayservice.yaml is missing"
    docs = documents()
    assert docs, "no YAML documents under deploy/"
    for path, doc in docs:
        where = path.relative_to(REPO)
        assert isinstance(doc, dict), f"{where}: a document is {type(doc).__name__}, not a mapping"
        for key in ("apiVersion", "kind"):
            assert doc.get(key), f"{where}: a document has no {key}"
        assert (doc.get("metadata") or {}).get("name"), f"{where}: a {doc['kind']} has no metadata.name"


def test_rayservice_kind_and_api_version() -> None:
    service = rayservice()
    assert service["apiVersion"] == "ray.io/v1"
    assert service["kind"] == "RayService"
    assert str(service["spec"]["rayClusterConfig"].get("rayVersion") or ""), "rayVersion must match the image's Ray"


def test_serve_config_names_an_application_that_exists() -> None:
    raw = rayservice()["spec"].get("serveConfigV2")
    assert isinstance(raw, str), "serveConfigV2 must be a YAML string (a block scalar), as KubeRay takes it"
    config = yaml.safe_load(raw)
    apps = config.get("applications") if isinstance(config, dict) else None
    assert apps, "serveConfigV2 names no applications"
    prefixes = [app.get("route_prefix", "/") for app in apps]
    assert len(prefixes) == len(set(prefixes)), f"two applications share a route prefix: {prefixes}"
    for app in apps:
        assert app.get("name"), f"an application has no name: {app}"
        module, sep, attribute = str(app.get("import_path", "")).partition(":")
        assert sep and module and attribute, f"import_path must be module:attribute, got {app.get('import_path')!r}"
        relative = Path(*module.split("."))
        candidates = [REPO / relative.with_suffix(".py"), REPO / relative / "__init__.py"]
        source = next((p for p in candidates if p.is_file()), None)
        tried = [str(p.relative_to(REPO)) for p in candidates]
        assert source is not None, f"import_path module {module} does not exist: none of {tried}"
        tree = ast.parse(source.read_text(), str(source))
        defined = set()
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                defined.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                defined.update(t.id for t in targets if isinstance(t, ast.Name))
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                defined.update((a.asname or a.name).split(".")[0] for a in node.names)
        assert attribute in defined, f"{source.relative_to(REPO)} defines no top-level {attribute!r} (import_path)"


def test_ray_groups_have_containers_with_requests_and_limits() -> None:
    groups = ray_groups()
    assert len(groups) >= 2, "the RayService needs a head group and at least one worker group"
    for name, group in groups:
        found = containers(group.get("template"))
        assert found, f"Ray group {name} has no containers"
        for c in found:
            resources = c.get("resources") or {}
            for kind in ("requests", "limits"):
                missing = [r for r in ("cpu", "memory") if r not in (resources.get(kind) or {})]
                assert not missing, f"Ray group {name}, container {c.get('name')}: no {kind} for {missing}"
        if name != "head":
            low, high = group.get("minReplicas", 0), group.get("maxReplicas", group.get("replicas", 1))
            assert low <= group.get("replicas", low) <= high, f"worker group {name}: replicas outside min/max"


def test_vllm_deployment_asks_for_a_gpu_and_is_reachable() -> None:
    vllm = [
        (d, c) for d in of_kind("Deployment") for c in containers(d) if str(c.get("image", "")).startswith("vllm/")
    ]
    assert vllm, "no Deployment runs a vllm/ image"
    for deployment, c in vllm:
        limits = (c.get("resources") or {}).get("limits") or {}
        assert int(limits.get("nvidia.com/gpu", 0)) >= 1, "the vLLM container must ask for nvidia.com/gpu"
        args = [str(a) for a in c.get("args") or c.get("command") or []]
        assert "--served-model-name" in args and args[args.index("--served-model-name") + 1] == "rag-generator"
    labels = vllm[0][0]["spec"]["template"]["metadata"]["labels"]
    services = [s for s in of_kind("Service") if s["spec"].get("selector", {}).items() <= labels.items()]
    assert services, "no Service selects the vLLM pods"
    urls = {f"http://{s['metadata']['name']}:{p['port']}/v1" for s in services for p in s["spec"]["ports"]}
    for name, c in ray_containers():
        url = env(c).get("RAG_GENERATOR__URL", {}).get("value")
        assert url in urls, f"Ray group {name}: RAG_GENERATOR__URL {url!r} is none of the vLLM Service's {urls}"


def test_every_container_image_is_named_and_tagged() -> None:
    all_containers = [(path, c) for path, doc in documents() for c in containers(doc)]
    assert all_containers
    for path, c in all_containers:
        image = c.get("image")
        where = f"{path.relative_to(REPO)}, container {c.get('name')}"
        assert isinstance(image, str) and image.strip() == image and image, f"{where}: image is {image!r}"
        last = image.rsplit("/", 1)[-1]
        assert ":" in last or "@sha256:" in image, f"{where}: image {image} has no tag or digest"
    images = {c["image"] for _, c in ray_containers()}
    assert images == {"rag-service:latest"}, f"the Ray pods must run the repository's image, not {images}"


def test_database_url_comes_from_a_secret() -> None:
    ray = ray_containers()
    for name, c in ray:
        assert "RAG_DATABASE_URL" in env(c), f"Ray group {name}: RAG_DATABASE_URL is not set"
    every = [(path, c) for path, doc in documents() for c in containers(doc)]
    for path, c in every:
        var = env(c).get("RAG_DATABASE_URL")
        if var is None:
            continue
        where = f"{path.relative_to(REPO)}, container {c.get('name')}"
        assert "value" not in var, f"{where}: RAG_DATABASE_URL is a literal; take it from a Secret"
        ref = (var.get("valueFrom") or {}).get("secretKeyRef") or {}
        assert ref.get("name") and ref.get("key"), f"{where}: RAG_DATABASE_URL has no secretKeyRef name and key"
    for path in manifest_files():
        assert "postgresql://" not in path.read_text() and "postgresql+" not in path.read_text(), (
            f"{path.relative_to(REPO)} holds a database URL; it belongs in the Secret"
        )


def test_data_dir_is_the_shared_volume() -> None:
    for name, group in ray_groups():
        spec = next(pod_specs(group["template"]))
        volumes = spec.get("volumes") or []
        claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in volumes if "persistentVolumeClaim" in v}
        for c in spec["containers"]:
            data_dir = env(c).get("RAG_DATA_DIR", {}).get("value")
            assert data_dir, f"Ray group {name}: RAG_DATA_DIR is not set"
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts") or []}
            assert claims.get(mounts.get(data_dir)) == "rag-data", (
                f"Ray group {name}: RAG_DATA_DIR {data_dir} is not on the PVC rag-data"
            )


@pytest.mark.parametrize("service", ["postgres", "vllm", "api"])
def test_compose_keeps_its_services(service: str) -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    assert service in (compose.get("services") or {}), f"docker-compose.yml lost its {service} service"
