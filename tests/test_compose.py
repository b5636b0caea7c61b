"""docker-compose.yml, checked by Docker Compose itself, and kept consistent with the image and its config.

No Docker engine is needed: `docker-compose config` validates the file against the Compose schema
and prints it normalized (paths absolute, short syntax expanded), which is what is asserted on.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import unavailable
from serve_support import LISTENERS
from sqlalchemy.engine import make_url

from mailsrv.core.config import load_config
from mailsrv.serve import parse_address

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    validator = shutil.which("docker-compose")
    if validator is None:
        unavailable("docker-compose is not installed (Debian package docker-compose; .ci/run installs it)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "DOCKER_"))}
    result = subprocess.run([validator, "--project-directory", str(ROOT), "-f", str(ROOT / "docker-compose.yml"),
                             "config"], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    # Imported here so that, without PyYAML (a test extra), only these tests fail, not collection.
    import yaml

    return yaml.safe_load(result.stdout)


@pytest.fixture(scope="module")
def mounted_config() -> Any:
    return load_config(ROOT / "docker" / "mailsrv.toml")


def test_the_services_are_mailsrv_and_postgres(compose):
    assert set(compose["services"]) == {"mailsrv", "postgres"}
    assert set(compose["volumes"]) == {"mailsrv-data", "postgres-data"}


def test_mailsrv_is_built_here_and_waits_for_a_healthy_postgres(compose):
    mailsrv = compose["services"]["mailsrv"]
    assert mailsrv["build"]["context"] == str(ROOT)
    assert mailsrv["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert mailsrv["volumes"] == [f"{ROOT}/docker/mailsrv.toml:/etc/mailsrv/mailsrv.toml:ro",
                                  "mailsrv-data:/var/lib/mailsrv:rw"]


def listened_ports(config: Any) -> set[int]:
    """The port of every listener the config turns on (the mail ones by their defaults here)."""
    return {parse_address(address, f"listen.{key}")[1] for key in LISTENERS
            if (address := getattr(config.listen, key))}


def test_every_mail_and_web_port_is_published_as_itself(compose, mounted_config):
    ports = compose["services"]["mailsrv"]["ports"]
    assert all(port["published"] == port["target"] for port in ports)
    assert {port["target"] for port in ports} == listened_ports(mounted_config) == {
        25, 465, 587, 110, 995, 143, 993, 9998, 443}
    assert "ports" not in compose["services"]["postgres"]  # reachable on the compose network only


def test_the_image_runs_as_a_user_that_may_bind_the_mail_ports_without_root(compose):
    dockerfile = (ROOT / "Dockerfile").read_text()
    users = re.findall(r"^USER (\S+)$", dockerfile, re.MULTILINE)
    assert users == ["mailsrv"]  # one USER, before CMD: nothing runs as root after the build
    assert dockerfile.index("USER mailsrv") < dockerfile.index("CMD [")
    assert "useradd --system" in dockerfile and "chown mailsrv:mailsrv /var/lib/mailsrv" in dockerfile
    # Ports below 1024 in the container's own network namespace, no capability granted.
    assert compose["services"]["mailsrv"]["sysctls"] == {"net.ipv4.ip_unprivileged_port_start": "0"}
    assert "cap_add" not in compose["services"]["mailsrv"] and "privileged" not in compose["services"]["mailsrv"]


def test_postgres_is_16_with_a_volume_and_a_health_check(compose):
    postgres = compose["services"]["postgres"]
    assert postgres["image"] == "postgres:16"
    assert postgres["volumes"] == ["postgres-data:/var/lib/postgresql/data:rw"]
    assert postgres["healthcheck"]["test"][0] == "CMD-SHELL"
    assert "pg_isready" in postgres["healthcheck"]["test"][1]


def test_the_mounted_config_points_at_the_postgres_service(compose, mounted_config):
    env = compose["services"]["postgres"]["environment"]
    url = make_url(mounted_config.database_url)
    assert (url.drivername, url.host, url.port) == ("postgresql+psycopg", "postgres", 5432)
    assert (url.username, url.password, url.database) == (
        env["POSTGRES_USER"], env["POSTGRES_PASSWORD"], env["POSTGRES_DB"])
    assert str(mounted_config.data_dir) == "/var/lib/mailsrv"  # the mailsrv-data volume


def test_the_image_serves_the_mounted_config_on_the_exposed_ports(mounted_config):
    dockerfile = (ROOT / "Dockerfile").read_text()
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", dockerfile, re.MULTILINE).group(1))
    assert cmd == ["mailsrv", "serve", "--config", "/etc/mailsrv/mailsrv.toml"]
    exposed = {int(port) for port in re.search(r"^EXPOSE (.*)$", dockerfile, re.MULTILINE).group(1).split()}
    assert exposed == listened_ports(mounted_config)
