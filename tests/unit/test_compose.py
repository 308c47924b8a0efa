"""docker-compose.yml is coherent: services, dependencies, healthchecks, shared config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
QUORUM_SERVICES = {"migrate", "api", "worker", "beat"}
ALL_SERVICES = QUORUM_SERVICES | {"postgres", "redis", "flower", "prometheus"}
WORKER_METRICS_PORT = "9400"
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    with (ROOT / "docker-compose.yml").open() as f:
        data = yaml.safe_load(f)
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def dependencies(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    depends_on = service.get("depends_on", {})
    # The short list form carries no condition; only the long form is accepted.
    assert isinstance(depends_on, dict), "depends_on must use the long form with a condition"
    return depends_on


def test_all_services_present(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == ALL_SERVICES


def test_dependencies_exist_and_have_conditions(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for dep, spec in dependencies(service).items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            assert dep != name
            assert isinstance(spec, dict) and spec.get("condition") in CONDITIONS, (
                f"{name} -> {dep} needs a condition"
            )


def test_healthy_dependencies_have_healthchecks(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for dep, spec in dependencies(service).items():
            if spec["condition"] == "service_healthy":
                test = services[dep].get("healthcheck", {}).get("test")
                assert test, f"{name} waits for {dep} to be healthy, but it has no healthcheck"


def test_migrate_is_a_completed_one_shot(services: dict[str, dict[str, Any]]) -> None:
    migrate = services["migrate"]
    assert migrate.get("restart") == "no"
    assert dependencies(migrate)["postgres"]["condition"] == "service_healthy"
    for name in ("api", "worker", "beat"):
        deps = dependencies(services[name])
        assert deps["migrate"]["condition"] == "service_completed_successfully", name
        assert deps["redis"]["condition"] == "service_healthy", name
    assert dependencies(services["flower"])["redis"]["condition"] == "service_healthy"


def test_quorum_services_share_env_and_run_quorum(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    shared = compose["x-quorum-env"]
    assert shared == {
        "QUORUM_DATABASE_URL": "postgresql+psycopg://quorum:quorum@postgres:5432/quorum",
        "QUORUM_BROKER_URL": "redis://redis:6379/0",
        "QUORUM_REDIS_URL": "redis://redis:6379/1",
        "QUORUM_LOG_JSON": "true",
    }
    for name in QUORUM_SERVICES:
        service = services[name]
        # The worker adds only its metrics port.
        extra = {"QUORUM_WORKER_METRICS_PORT": WORKER_METRICS_PORT} if name == "worker" else {}
        assert service["environment"] == {**shared, **extra}, name
        command = service["command"]
        words = command if isinstance(command, list) else command.split()
        assert words[0] == "quorum", name


def test_quorum_images_build_from_the_repo(services: dict[str, dict[str, Any]]) -> None:
    assert (ROOT / "Dockerfile").is_file()
    for name in QUORUM_SERVICES:
        build = services[name]["build"]
        context = build if isinstance(build, str) else build["context"]
        assert context == ".", name
        if isinstance(build, dict):
            assert (ROOT / context / build.get("dockerfile", "Dockerfile")).is_file()


def test_dockerfile_runs_as_non_root() -> None:
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    bases = [line.split()[1] for line in lines if line.startswith("FROM ")]
    assert bases == ["python:3.11-slim"]
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in {"root", "0"}


def test_public_images_and_ports(services: dict[str, dict[str, Any]]) -> None:
    assert services["postgres"]["image"].startswith("postgres:16")
    assert services["redis"]["image"].startswith("redis:7")
    assert services["flower"]["image"] == "mher/flower:2.0"
    assert any(str(p).endswith("5555:5555") for p in services["flower"]["ports"])
    assert any(str(p).endswith("8000:8000") for p in services["api"]["ports"])


def test_prometheus_scrapes_the_api_and_every_worker(services: dict[str, dict[str, Any]]) -> None:
    prometheus = services["prometheus"]
    assert prometheus["image"].startswith("prom/prometheus:")
    assert any(str(p).endswith("9090:9090") for p in prometheus["ports"])
    assert prometheus["healthcheck"]["test"]
    assert dependencies(prometheus)["api"]["condition"] == "service_healthy"
    mounts = {v.split(":")[0]: v.split(":")[1] for v in prometheus["volumes"]}
    config_path = mounts["./deploy/prometheus/prometheus.yml"]
    assert f"--config.file={config_path}" in prometheus["command"]
    assert WORKER_METRICS_PORT in [str(p) for p in services["worker"]["expose"]]

    with (ROOT / "deploy" / "prometheus" / "prometheus.yml").open() as f:
        config = yaml.safe_load(f)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    api = jobs["quorum-api"]
    assert api["metrics_path"] == "/metrics"
    assert api["static_configs"][0]["targets"] == ["api:8000"]
    (workers,) = jobs["quorum-worker"]["dns_sd_configs"]
    assert workers["names"] == ["worker"]
    assert str(workers["port"]) == WORKER_METRICS_PORT
