"""Offline checks of the container setup: compose files against the compose-spec schema
(vendored by check-jsonschema), the trainer profile, the shared data volume, a torch-free
api image, and `docker compose config` when a compose client is installed."""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
GPU_OVERRIDE = ROOT / "docker-compose.gpu.yml"
DOCKERFILE = ROOT / "Dockerfile"
DATA_VOLUME = "attrib-data"
DATA_USERS = {"api", "worker", "attribution-worker", "trainer", "migrate"}


def _check_schema(path: Path) -> subprocess.CompletedProcess:
    pytest.importorskip("check_jsonschema")
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True, text=True, timeout=120)


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


@pytest.mark.parametrize("path", [COMPOSE, GPU_OVERRIDE], ids=lambda p: p.name)
def test_compose_file_matches_compose_spec(path):
    result = _check_schema(path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("breakage", [None, "unknown_key", "bad_condition"])
def test_schema_check_rejects_a_broken_copy(tmp_path, breakage):
    """The unmodified round-tripped copy passes (control); each broken copy fails."""
    doc = _load(COMPOSE)
    if breakage is None:
        pass
    elif breakage == "unknown_key":
        doc["services"]["api"]["not_a_compose_key"] = True
    else:
        doc["services"]["api"]["depends_on"]["migrate"]["condition"] = "whenever"
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(yaml.safe_dump(doc))
    result = _check_schema(broken)
    assert (result.returncode == 0) == (breakage is None), result.stdout + result.stderr


def test_trainer_is_on_demand_under_a_profile():
    services = _load(COMPOSE)["services"]
    assert services["trainer"].get("profiles") == ["trainer"]
    assert services["trainer"]["command"][-2:] == ["training", "retrain"]
    for name in ("postgres", "redis", "migrate", "api", "worker", "attribution-worker"):
        assert not services[name].get("profiles"), f"{name} must start with a plain `up`"


DISTRIBUTED = {"milvus-etcd", "object-store", "object-store-init", "milvus"}


def test_distributed_profile_runs_milvus_with_its_etcd_and_object_store():
    services = _load(COMPOSE)["services"]
    assert {name for name, s in services.items() if s.get("profiles") == ["distributed"]} == DISTRIBUTED
    milvus = services["milvus"]
    assert milvus["image"].startswith("milvusdb/milvus:v2.") and milvus["command"][-1] == "standalone"
    assert set(milvus["depends_on"]) == {"milvus-etcd", "object-store"}
    assert milvus["environment"]["ETCD_ENDPOINTS"] == "milvus-etcd:2379"
    assert milvus["environment"]["MINIO_ADDRESS"] == "object-store:9000"
    assert "local/attrib" in " ".join(services["object-store-init"]["entrypoint"])


def test_backends_are_chosen_by_the_shared_environment_and_default_to_one_machine():
    env = _load(COMPOSE)["x-attrib-env"]
    assert env["ATTRIB_VECTOR_BACKEND"] == "${ATTRIB_VECTOR_BACKEND:-faiss}"
    assert env["ATTRIB_STORAGE_URL"] == "${ATTRIB_STORAGE_URL:-}"
    assert env["AWS_ACCESS_KEY_ID"] is None  # passed through only when set: never a default secret


def _volume_sources(service: dict) -> dict[str, str]:
    """target -> source of a service's volumes, short or long syntax."""
    out = {}
    for vol in service.get("volumes", []):
        if isinstance(vol, str):
            source, target = vol.split(":")[:2]
        else:
            source, target = vol.get("source"), vol["target"]
        out[target] = source
    return out


def test_every_service_shares_one_data_volume():
    doc = _load(COMPOSE)
    assert DATA_VOLUME in doc["volumes"]
    for name, service in doc["services"].items():
        data_dir = (service.get("environment") or {}).get("ATTRIB_DATA_DIR")
        if name in DATA_USERS or data_dir:
            assert data_dir == "/data", name
            assert _volume_sources(service).get("/data") == DATA_VOLUME, name
        else:
            assert DATA_VOLUME not in _volume_sources(service).values(), name
    assert DATA_USERS <= set(doc["services"])


def test_migrate_gates_api_and_worker():
    services = _load(COMPOSE)["services"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("api", "worker", "attribution-worker", "trainer"):
        deps = services[name]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully", name
        assert deps["redis"]["condition"] == "service_healthy", name


@pytest.mark.parametrize("name", ["worker", "attribution-worker"])
def test_gpu_reservation_lives_only_in_the_override(name):
    assert "deploy" not in _load(COMPOSE)["services"][name]
    devices = _load(GPU_OVERRIDE)["services"][name]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and devices[0]["count"] == "all"


def test_workers_split_the_queues_as_the_stack_script_does():
    """An embedding worker and a dedicated attribution worker (scripts/stack.sh): together every queue."""
    services = _load(COMPOSE)["services"]
    queues = {name: services[name]["command"][services[name]["command"].index("--queues") + 1]
              for name in ("worker", "attribution-worker")}
    assert queues == {"worker": "embed", "attribution-worker": "attribute"}
    stack = (ROOT / "scripts" / "stack.sh").read_text()
    assert "--queues embed" in stack and "--queues attribute" in stack


def _stages() -> dict[str, tuple[str, list[str]]]:
    """stage name -> (parent, instruction lines without comments, continuations joined)."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages: dict[str, tuple[str, list[str]]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"FROM\s+(\S+)\s+AS\s+(\S+)", line, re.IGNORECASE)
        if m:
            current = m.group(2)
            stages[current] = (m.group(1), [])
        elif current:
            stages[current][1].append(line)
    return stages


def test_api_target_installs_no_torch():
    stages = _stages()
    assert {"base", "api", "ml"} <= set(stages)
    chain, name = [], "api"
    while name in stages:
        chain.append(name)
        name = stages[name][0]
    assert chain == ["api", "base"] and name.startswith("python:3.11-slim")
    for stage in chain:
        for line in stages[stage][1]:
            low = line.lower()
            assert "torch" not in low and "faiss" not in low, line
            assert not re.search(r"\[[^\]]*\bml\b[^\]]*\]", low), line
    api = " ".join(stages["api"][1])
    assert '".[api]"' in api and "/healthz" in api and "HEALTHCHECK" in api
    assert re.search(r"^USER\s+(?!root|0\b)", "\n".join(stages["api"][1]), re.MULTILINE)


def test_ml_target_uses_constraints_and_bakes_open_clip_weights():
    ml = " ".join(_stages()["ml"][1])
    assert re.search(r'-c constraints\.txt "\.\[ml\]"', ml)
    assert "ARG OPEN_CLIP_MODEL" in ml and "ARG OPEN_CLIP_PRETRAINED" in ml
    assert "open_clip.create_model_and_transforms" in ml


def _compose_cli() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    if legacy and subprocess.run([legacy, "version"], capture_output=True).returncode == 0:
        return [legacy]
    return None


@pytest.mark.parametrize("files", [[COMPOSE], [COMPOSE, GPU_OVERRIDE]], ids=["cpu", "gpu"])
def test_docker_compose_config(files):
    cli = _compose_cli()
    if cli is None:
        pytest.skip("no docker compose client installed")
    args = [a for f in files for a in ("-f", str(f))]
    result = subprocess.run([*cli, *args, "--profile", "trainer", "--profile", "distributed", "config", "--quiet"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_copies_every_package_the_project_installs():
    """A package added to pyproject's include list but not COPYed would vanish from the images."""
    import re
    import tomllib
    includes = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {pattern.rstrip("*") for pattern in includes}
    copied = set(re.findall(r"^COPY (\w+) \./\1$", (DOCKERFILE).read_text(), flags=re.M))
    assert packages <= copied, packages - copied
