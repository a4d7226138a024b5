"""prometheus.yml, Grafana provisioning and docker-compose.yml fit together.

No Docker engine runs where these tests run, so the compose file is checked for structure:
every mounted file exists, and the paths each container expects match what is mounted.
"""

from __future__ import annotations

import subprocess
from pathlib import Path, PurePosixPath

import pytest
import yaml
from dashboard_files import DASHBOARD_DIR, GRAFANA_DIR, RULES_DIR

from collector.config import load_config

COMPOSE = GRAFANA_DIR / "docker-compose.yml"


def _yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def compose() -> dict:
    return _yaml(COMPOSE)


def _mounts(service: dict) -> dict[str, Path]:
    """Container path -> host path of a service's bind mounts (host paths relative to grafana/)."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target, *_ = volume.split(":")
        if source.startswith("."):
            mounts[target] = (GRAFANA_DIR / source).resolve()
    return mounts


@pytest.mark.parametrize(("name", "target"), [("prometheus.yml", "127.0.0.1:9464"),
                                              ("prometheus-compose.yml", "collector:9464")])
def test_prometheus_config_is_valid_and_scrapes_the_collector(name: str, target: str) -> None:
    path = RULES_DIR / name
    result = subprocess.run(["promtool", "check", "config", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    config = _yaml(path)
    assert config["rule_files"] == ["rules.yml"]
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "cognocient-collector"  # the alerts select this job
    assert job["static_configs"] == [{"targets": [target]}]


def test_datasource_provisioning_points_at_the_compose_prometheus(compose: dict) -> None:
    (datasource,) = _yaml(GRAFANA_DIR / "provisioning/datasources/prometheus.yaml")["datasources"]
    assert datasource["type"] == "prometheus" and datasource["isDefault"] is True
    port = compose["services"]["prometheus"]["ports"][0].split(":")[1]
    assert datasource["url"] == f"http://prometheus:{port}"


def test_dashboard_provider_path_is_where_compose_mounts_the_dashboards(compose: dict) -> None:
    (provider,) = _yaml(GRAFANA_DIR / "provisioning/dashboards/cognocient.yaml")["providers"]
    assert provider["type"] == "file"
    mounts = _mounts(compose["services"]["grafana"])
    assert mounts[provider["options"]["path"]] == DASHBOARD_DIR
    assert mounts["/etc/grafana/provisioning"] == GRAFANA_DIR / "provisioning"
    home = compose["services"]["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    home_path = PurePosixPath(home)
    assert (mounts[str(home_path.parent)] / home_path.name).is_file()


def test_compose_has_the_stack_and_every_mounted_file_exists(compose: dict) -> None:
    services = compose["services"]
    assert {"collector", "prometheus", "grafana"} <= set(services)
    for name, service in services.items():
        assert service.get("image"), name
        for target, source in _mounts(service).items():
            assert source.exists(), f"{name}: {source} (mounted at {target}) does not exist"


def test_compose_prometheus_loads_the_rules_its_config_names(compose: dict) -> None:
    service = compose["services"]["prometheus"]
    mounts = _mounts(service)
    config_in_container = next(arg.split("=", 1)[1] for arg in service["command"]
                               if arg.startswith("--config.file="))
    config = _yaml(mounts[config_in_container])
    assert config["scrape_configs"][0]["static_configs"][0]["targets"] == ["collector:9464"]
    for rule_file in config["rule_files"]:
        in_container = str(PurePosixPath(config_in_container).parent / rule_file)
        assert mounts[in_container] == RULES_DIR / "rules.yml"


def test_compose_collector_config_is_valid_and_reachable(compose: dict) -> None:
    service = compose["services"]["collector"]
    command = " ".join(service["command"])
    config_in_container = command.split("--config", 1)[1].split()[0]
    host_config = _mounts(service)[config_in_container]
    config = load_config(host_config)
    # Other containers reach it only if it listens beyond its own loopback.
    assert config.prometheus.endpoint.startswith("0.0.0.0:")
    assert config.receivers.otlp.grpc.endpoint.startswith("0.0.0.0:")
    assert config.receivers.otlp.http.endpoint.startswith("0.0.0.0:")
    published = {port.split(":")[1] for port in service["ports"]}
    assert {"4317", "4318", "9464"} <= published


def test_compose_python_services_install_what_the_checkout_has(compose: dict) -> None:
    for name in ("collector", "demo"):
        command = " ".join(compose["services"][name]["command"])
        copied = [word[len("/src/"):] for word in command.split() if word.startswith("/src/")]
        assert copied, name
        for relative in copied:
            assert (GRAFANA_DIR.parent / relative).exists(), f"{name} copies /src/{relative}: missing"
        assert _mounts(compose["services"][name])["/src"] == GRAFANA_DIR.parent, name
