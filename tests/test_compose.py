"""docker-compose.yml is validated here (no Docker engine on our machines): its services,
images and the environment it gives Overtime must match what the code reads."""

from __future__ import annotations

from pathlib import Path

import yaml

from overtime.settings import Settings
from starter.web.config import WebSettings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_the_full_stack_is_there() -> None:
    services = COMPOSE["services"]
    assert {
        "postgresql",
        "temporal",
        "temporal-ui",
        "mailcatcher",
        "fake-stripe",
        "worker",
        "api",
    } <= set(services)
    assert services["temporal"]["environment"]["DB"] == "postgres12"
    assert services["temporal"]["depends_on"]["postgresql"]["condition"] == "service_healthy"
    assert services["worker"]["command"] == ["python", "-m", "worker"]
    assert "healthcheck" in services["api"] and "healthcheck" in services["postgresql"]
    for name in ("worker", "api", "fake-stripe"):
        assert services[name]["build"] == "."
    for name in ("postgresql", "temporal", "temporal-ui", "mailcatcher"):
        image = services[name]["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name} needs a pinned image"


def test_every_overtime_variable_is_a_setting() -> None:
    env = COMPOSE["x-overtime-env"]
    fields = set(Settings.model_fields) | set(WebSettings.model_fields)
    aliases = {"STRIPE_API_KEY", "STRIPE_WEBHOOK_SECRET", "STRIPE_PUBLISHABLE_KEY"}
    for key in env:
        if key in aliases:
            continue
        assert key.startswith("OVERTIME_"), key
        assert key.removeprefix("OVERTIME_").lower() in fields, f"{key} is not a setting"
    # And the values parse: the settings module accepts the compose environment.
    values = {k: str(v).split(":-")[0].replace("${", "") for k, v in env.items()}
    assert Settings(
        **{
            k.removeprefix("OVERTIME_").lower(): v
            for k, v in values.items()
            if k.startswith("OVERTIME_") and "$" not in str(env[k])
        }
    )


def test_the_dockerfile_copies_every_package() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for package in (
        "billing",
        "workflows",
        "activities",
        "starter",
        "overtime",
        "devstack",
        "config",
    ):
        assert f"COPY {package} {package}" in dockerfile
    assert "COPY worker.py" in dockerfile
