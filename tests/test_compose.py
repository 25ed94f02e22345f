"""docker-compose.yml, its staging override and the nginx in front of the API.

No Docker engine on our machines, so the files are checked as compose reads them: the
environment is interpolated the way compose does (``${VAR:?}`` refuses to start without
VAR), parsed by the real Settings and judged by the real production check. The proxy's
configuration is run by a real nginx when one is installed (``nginx`` on PATH or
``OVERTIME_TEST_NGINX``), in front of a small upstream that echoes what it received.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import datetime
import ipaddress
import json
import os
import re
import secrets
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from overtime.observability import metrics_runtime
from overtime.production import (
    production_problems,
    production_warnings,
    require_production_ready,
)
from overtime.settings import Settings
from starter.web.config import DEV_SESSION_SECRET, WebSettings
from tests.conftest import free_port

# Docker-compose.yml and images: no database; the PostgreSQL pass would repeat it unchanged.
pytestmark = pytest.mark.sqlite_only

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_TEXT = (ROOT / "docker-compose.yml").read_text()
COMPOSE = yaml.safe_load(COMPOSE_TEXT)
STAGING_TEXT = (ROOT / "deploy" / "docker-compose.staging.yml").read_text()
STAGING = yaml.safe_load(STAGING_TEXT)
NGINX_TEMPLATE = (ROOT / "deploy" / "nginx.conf.template").read_text()
SERVICES: dict[str, Any] = COMPOSE["services"]

# What the operator must provide; none of it may have a default in the compose files.
SECRET_VARIABLES = {
    "POSTGRES_PASSWORD",
    "OVERTIME_ADMIN_TOKEN",
    "OVERTIME_TELEPHONY_TOKEN",
    "OVERTIME_WEBHOOK_SECRET",
    "OVERTIME_PAYLOAD_KEY",
    "OVERTIME_PAYLOAD_KEY_ID",
    "OVERTIME_ADMIN_PASSWORD",
    "OVERTIME_WEB_SESSION_SECRET",
    "STRIPE_API_KEY",
    "STRIPE_PUBLISHABLE_KEY",
    "STRIPE_WEBHOOK_SECRET",
}
# Not secrets, but without them the stack cannot run safely: required, never defaulted
# (a default mail relay would be the mail catcher, and owners locked out for ever).
REQUIRED_VARIABLES = SECRET_VARIABLES | {
    "OVERTIME_ADMIN_EMAIL",
    "OVERTIME_SMTP_HOST",
    "OVERTIME_SMTP_PORT",
    "OVERTIME_MAIL_FROM",
}
INTERNAL_SERVICES = {
    "postgresql",
    "temporal",
    "temporal-ui",
    "mailcatcher",
    "fake-stripe",
    "worker",
    "api",
}
PUBLIC_DEV_VALUES = (
    "dev-admin-token",
    "dev-telephony-token",
    "dev-webhook-secret",
    "whsec_overtime_local",
    "sk_test_overtime_local",
    "pk_test_overtime_local",
    "dev-admin-password",
    "dev-1",
    DEV_SESSION_SECRET,
    Settings.model_fields["payload_key"].default,
)
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


class MissingVariable(Exception):
    pass


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?message}``."""

    def one(match: re.Match[str]) -> str:
        name, operator, argument = match.group(1), match.group(2), match.group(3)
        current = env.get(name)
        unset = current is None or (
            operator is not None and operator.startswith(":") and not current
        )
        if operator and operator.endswith("?") and unset:
            raise MissingVariable(f"{name}: {argument}")
        if operator and operator.endswith("-") and unset:
            return argument
        return current or ""

    return _VARIABLE.sub(one, value)


def merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``docker compose -f base -f override``: mappings merge key by key."""
    result = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def strong_operator_env() -> dict[str, str]:
    """What an operator's env file holds: strong, distinct secrets."""
    return {
        "POSTGRES_PASSWORD": secrets.token_hex(24),
        "OVERTIME_PUBLIC_HOST": "billing.example.com",
        "OVERTIME_ADMIN_TOKEN": secrets.token_urlsafe(32),
        "OVERTIME_TELEPHONY_TOKEN": secrets.token_urlsafe(32),
        "OVERTIME_WEBHOOK_SECRET": secrets.token_urlsafe(32),
        "OVERTIME_PAYLOAD_KEY": base64.b64encode(os.urandom(32)).decode(),
        "OVERTIME_PAYLOAD_KEY_ID": "prod-2026-12",
        "OVERTIME_ADMIN_EMAIL": "ops@example.com",
        "OVERTIME_ADMIN_PASSWORD": secrets.token_urlsafe(18),
        "OVERTIME_WEB_SESSION_SECRET": secrets.token_urlsafe(48),
        "STRIPE_API_KEY": "sk_live_" + secrets.token_urlsafe(24),
        "STRIPE_PUBLISHABLE_KEY": "pk_live_" + secrets.token_urlsafe(24),
        "STRIPE_WEBHOOK_SECRET": "whsec_" + secrets.token_urlsafe(24),
        "OVERTIME_SMTP_HOST": "smtp.example.com",
        "OVERTIME_SMTP_PORT": "587",
        "OVERTIME_MAIL_FROM": "Overtime <billing@example.com>",
        "OVERTIME_LEGAL_COMPANY": "Safina AI GmbH",
        "OVERTIME_LEGAL_ADDRESS": "Beispielweg 2, 80331 München",
        "OVERTIME_LEGAL_REGISTER": "Amtsgericht München, HRB 123456",
        "OVERTIME_LEGAL_VAT_ID": "DE123456789",
    }


def dev_operator_env() -> dict[str, str]:
    """The same variables set to the repository's public development values."""
    return {
        "POSTGRES_PASSWORD": "overtime",
        "OVERTIME_PUBLIC_HOST": "billing.example.com",
        "OVERTIME_ADMIN_TOKEN": "dev-admin-token",
        "OVERTIME_TELEPHONY_TOKEN": "dev-telephony-token",
        "OVERTIME_WEBHOOK_SECRET": "dev-webhook-secret",
        "OVERTIME_PAYLOAD_KEY": Settings.model_fields["payload_key"].default,
        "OVERTIME_PAYLOAD_KEY_ID": "dev-1",
        "OVERTIME_ADMIN_EMAIL": "admin@overtime.local",
        "OVERTIME_ADMIN_PASSWORD": "dev-admin-password",
        "OVERTIME_WEB_SESSION_SECRET": DEV_SESSION_SECRET,
        "STRIPE_API_KEY": "sk_test_overtime_local",
        "STRIPE_PUBLISHABLE_KEY": "pk_test_overtime_local",
        "STRIPE_WEBHOOK_SECRET": "whsec_overtime_local",
        "OVERTIME_SMTP_HOST": "mailcatcher",
        "OVERTIME_SMTP_PORT": "1025",
        "OVERTIME_MAIL_FROM": "Overtime <billing@overtime.local>",
    }


def service_env(compose: dict[str, Any], service: str, operator: dict[str, str]) -> dict[str, str]:
    environment = compose["services"][service]["environment"]
    return {key: interpolate(str(value), operator) for key, value in environment.items()}


@pytest.fixture
def process_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Settings and WebSettings of a process started with exactly this environment."""

    def build(env: dict[str, str]) -> tuple[Settings, WebSettings]:
        for key in list(os.environ):
            if key.startswith(("OVERTIME_", "STRIPE_")):
                monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        return Settings(), WebSettings()

    yield build


def networks_of(service: dict[str, Any]) -> set[str]:
    networks = service.get("networks", [])
    return set(networks)  # a list of names, or a mapping of name -> options


def proxy_address() -> str:
    return SERVICES["proxy"]["networks"]["frontend"]["ipv4_address"]


# --- the stack ---------------------------------------------------------------------------


def test_the_full_stack_is_there() -> None:
    assert INTERNAL_SERVICES | {"proxy"} <= set(SERVICES)
    assert SERVICES["temporal"]["environment"]["DB"] == "postgres12"
    assert SERVICES["temporal"]["depends_on"]["postgresql"]["condition"] == "service_healthy"
    assert SERVICES["worker"]["command"] == ["python", "-m", "worker"]
    assert SERVICES["api"]["command"] == [
        "python",
        "-m",
        "starter.serve",
        "--host",
        "0.0.0.0",
        "--port",
        "8000",
    ]
    assert "healthcheck" in SERVICES["api"] and "healthcheck" in SERVICES["postgresql"]
    # The health check still reaches the API on loopback (an allowed host).
    assert "http://127.0.0.1:8000/healthz" in str(SERVICES["api"]["healthcheck"]["test"])
    for name in ("worker", "api", "fake-stripe"):
        assert SERVICES[name]["build"] == "."
    for name, service in {**SERVICES, **STAGING["services"]}.items():
        if "image" in service:
            image = service["image"]
            assert ":" in image and not image.endswith(":latest"), f"{name} needs a pinned image"


def test_every_overtime_variable_is_a_setting() -> None:
    fields = set(Settings.model_fields) | set(WebSettings.model_fields)
    aliases = {"STRIPE_API_KEY", "STRIPE_WEBHOOK_SECRET", "STRIPE_PUBLISHABLE_KEY"}
    for compose in (COMPOSE, STAGING):
        for name in ("api", "worker"):
            for key in compose["services"][name]["environment"]:
                if key in aliases:
                    continue
                assert key.startswith("OVERTIME_"), key
                assert key.removeprefix("OVERTIME_").lower() in fields, f"{key} is not a setting"


def test_the_dockerfile_copies_every_package_and_runs_the_guarded_server() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for package in ("billing", "workflows", "activities", "starter", "overtime", "devstack"):
        assert f"COPY {package} {package}" in dockerfile
    assert "COPY config config" in dockerfile and "COPY worker.py" in dockerfile
    assert 'CMD ["python", "-m", "starter.serve", "--host", "0.0.0.0", "--port", "8000"]' in (
        dockerfile
    )
    assert "uvicorn" not in dockerfile.split("CMD", 1)[1]


# --- production settings -----------------------------------------------------------------


def test_compose_runs_production_and_requires_every_secret() -> None:
    environment = SERVICES["api"]["environment"]
    assert environment["OVERTIME_ENV"] == "production"
    assert SERVICES["worker"]["environment"]["OVERTIME_ENV"] == "production"
    referenced: dict[str, set[str | None]] = {}
    for text in (COMPOSE_TEXT, STAGING_TEXT):
        for match in _VARIABLE.finditer(text):
            referenced.setdefault(match.group(1), set()).add(match.group(2))
    for variable in REQUIRED_VARIABLES:
        assert variable in referenced, f"{variable} is never asked for"
        # Every use either requires it or is plain (after a required use in the same
        # file): never a default.
        assert referenced[variable] <= {":?", None}, f"{variable} has a default"
        assert ":?" in referenced[variable]
    # And no public development value is written anywhere in the compose files.
    for text in (COMPOSE_TEXT, STAGING_TEXT):
        for value in PUBLIC_DEV_VALUES:
            assert value not in text, f"{value!r} appears in a compose file"
    # The fake Stripe is never the default: no base URL, no opt-in in the base file.
    assert "OVERTIME_STRIPE_API_BASE" not in environment
    assert "OVERTIME_STAGING_FAKE_STRIPE" not in environment


@pytest.mark.parametrize("missing", sorted(REQUIRED_VARIABLES | {"OVERTIME_PUBLIC_HOST"}))
def test_compose_refuses_to_start_without_each_variable(missing: str) -> None:
    operator = strong_operator_env()
    for empty in (None, ""):
        if empty is None:
            del operator[missing]
        else:
            operator[missing] = empty
        with pytest.raises(MissingVariable, match=missing):
            for name in ("api", "worker", "postgresql", "temporal", "proxy"):
                service_env(COMPOSE, name, operator)


def test_the_compose_environment_with_strong_secrets_passes_the_production_check(
    process_settings: Any,
) -> None:
    operator = strong_operator_env()
    for name in ("api", "worker"):
        settings, web = process_settings(service_env(COMPOSE, name, operator))
        assert settings.is_production
        assert production_problems(settings, web) == []
        # Nothing to warn about either: real mail relay and sender, proxies, https.
        assert production_warnings(settings, web) == []
        require_production_ready(settings, web)
        assert settings.stripe_api_base is None  # Stripe itself
        assert (settings.smtp_host, settings.smtp_port) == ("smtp.example.com", 587)
        assert settings.trusted_proxies == [proxy_address()]
        assert settings.public_url == "https://billing.example.com"
        assert {"billing.example.com", "127.0.0.1"} <= set(settings.effective_allowed_hosts())
        assert settings.database_url and operator["POSTGRES_PASSWORD"] in settings.database_url
        assert not settings.codec_allow_loopback and not settings.payload_accept_plaintext
        assert web.web_https_only


def test_the_compose_environment_with_dev_values_is_refused(process_settings: Any) -> None:
    settings, web = process_settings(service_env(COMPOSE, "api", dev_operator_env()))
    named = {problem.variable for problem in production_problems(settings, web)}
    assert {
        "OVERTIME_ADMIN_TOKEN",
        "OVERTIME_TELEPHONY_TOKEN",
        "OVERTIME_WEBHOOK_SECRET",
        "OVERTIME_PAYLOAD_KEY",
        "OVERTIME_PAYLOAD_KEY_ID",
        "OVERTIME_ADMIN_PASSWORD",
        "OVERTIME_WEB_SESSION_SECRET",
        "STRIPE_API_KEY",
        "STRIPE_PUBLISHABLE_KEY",
        "STRIPE_WEBHOOK_SECRET",
        "OVERTIME_ADMIN_EMAIL",
        "OVERTIME_SMTP_HOST",  # the mail catcher, outside staging
    } <= named
    with pytest.raises(SystemExit):
        require_production_ready(settings, web)


def test_staging_is_an_override_that_opts_into_the_fake_stripe(process_settings: Any) -> None:
    assert SERVICES["fake-stripe"]["profiles"] == ["staging"]
    staging = merged(COMPOSE, STAGING)
    operator = {**strong_operator_env(), "STRIPE_API_KEY": "sk_test_staging"}
    for name in ("api", "worker"):
        assert "fake-stripe" in staging["services"][name]["depends_on"]
        settings, web = process_settings(service_env(staging, name, operator))
        assert settings.stripe_api_base == "http://fake-stripe:8420"
        assert settings.staging_fake_stripe
        assert production_problems(settings, web) == []
    # A live key is not sent to the fake.
    live = {**operator, "STRIPE_API_KEY": "sk_live_" + secrets.token_urlsafe(24)}
    settings, web = process_settings(service_env(staging, "api", live))
    assert {p.variable for p in production_problems(settings, web)} == {"STRIPE_API_KEY"}


def test_the_mail_catcher_is_staging_and_debug_only(process_settings: Any) -> None:
    assert SERVICES["mailcatcher"]["profiles"] == ["staging", "debug"]
    # A plain `docker compose up` starts no catcher and no fake.
    default = {name for name, service in SERVICES.items() if not service.get("profiles")}
    assert default.isdisjoint({"mailcatcher", "fake-stripe"})
    catcher = {"OVERTIME_SMTP_HOST": "mailcatcher", "OVERTIME_SMTP_PORT": "1025"}
    operator = {**strong_operator_env(), **catcher}
    # Production pointed at the catcher: refused (sign-in codes would reach no one).
    settings, web = process_settings(service_env(COMPOSE, "api", operator))
    assert {p.variable for p in production_problems(settings, web)} == {"OVERTIME_SMTP_HOST"}
    # Staging may keep its mail there (a warning).
    staging = merged(COMPOSE, STAGING)
    settings, web = process_settings(
        service_env(staging, "worker", {**operator, "STRIPE_API_KEY": "sk_test_staging"})
    )
    assert production_problems(settings, web) == []
    assert "OVERTIME_SMTP_HOST" in {p.variable for p in production_warnings(settings, web)}


# --- networks and published ports ----------------------------------------------------------


def test_the_backend_is_on_an_internal_network_and_only_the_proxy_is_published() -> None:
    networks = COMPOSE["networks"]
    assert networks["internal"]["internal"] is True
    assert networks["frontend"]["internal"] is True
    on_internal = {name for name, s in SERVICES.items() if "internal" in networks_of(s)}
    debug = {name for name, s in SERVICES.items() if s.get("profiles") == ["debug"]}
    assert on_internal - debug == INTERNAL_SERVICES
    # Nothing of the backend has a network with a way out, except the two processes that
    # call Stripe, SMTP and the telephony webhook, and those publish nothing.
    for name in INTERNAL_SERVICES:
        outside = networks_of(SERVICES[name]) - {"internal", "frontend"}
        assert outside <= ({"egress"} if name in {"api", "worker"} else set()), name
        assert "ports" not in SERVICES[name], f"{name} publishes a port"
    published = {name for name, s in SERVICES.items() if "ports" in s and not s.get("profiles")}
    assert published == {"proxy"}
    assert SERVICES["proxy"]["ports"] == ["80:80", "443:443"]
    assert networks_of(SERVICES["proxy"]) == {"edge", "frontend"}
    # The proxy and the API share the frontend network only.
    assert networks_of(SERVICES["proxy"]) & networks_of(SERVICES["api"]) == {"frontend"}


def test_debug_ports_are_behind_a_profile_and_on_loopback_only() -> None:
    forwarded: dict[str, int] = {}
    for name, service in {**SERVICES, **STAGING["services"]}.items():
        if "ports" not in service or name == "proxy":
            continue
        assert service.get("profiles") == ["debug"], f"{name} publishes outside a profile"
        assert service["image"].startswith("alpine/socat:")
        for mapping in service["ports"]:
            host, host_port, _ = mapping.split(":")
            assert host == "127.0.0.1", f"{name} publishes beyond loopback"
            target = service["command"][1]
            forwarded[target] = int(host_port)
    assert forwarded == {
        "TCP:temporal:7233": 7233,
        "TCP:temporal-ui:8080": 8233,
        "TCP:mailcatcher:8025": 8025,
        "TCP:fake-stripe:8420": 8420,
    }


def test_the_api_believes_forwarded_headers_from_the_proxy_address_only() -> None:
    subnet = ipaddress.ip_network(COMPOSE["networks"]["frontend"]["ipam"]["config"][0]["subnet"])
    proxy = ipaddress.ip_address(proxy_address())
    api = ipaddress.ip_address(SERVICES["api"]["networks"]["frontend"]["ipv4_address"])
    assert proxy in subnet and api in subnet and proxy != api
    trusted = json.loads(SERVICES["api"]["environment"]["OVERTIME_TRUSTED_PROXIES"])
    assert trusted == [str(proxy)]
    assert trusted == json.loads(SERVICES["worker"]["environment"]["OVERTIME_TRUSTED_PROXIES"])


def test_worker_metrics_listen_on_all_interfaces_in_compose(process_settings: Any) -> None:
    env = service_env(COMPOSE, "worker", strong_operator_env())
    assert env["OVERTIME_WORKER_METRICS_HOST"] == "0.0.0.0"
    settings, _ = process_settings(env)
    assert (settings.worker_metrics_host, settings.worker_metrics_port) == ("0.0.0.0", 9464)
    assert "OVERTIME_WORKER_METRICS_HOST" not in SERVICES["api"]["environment"]
    # Settings().worker_metrics_host is really where the exporter binds: reachable on a
    # non-loopback address of this machine.
    address = _non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback address")
    port = free_port()
    runtime = metrics_runtime(port, settings.worker_metrics_host)  # serves while referenced
    deadline = time.monotonic() + 5
    while True:
        try:
            response = httpx.get(f"http://{address}:{port}/metrics", timeout=2)
            break
        except httpx.ConnectError:
            assert time.monotonic() < deadline, f"nothing listens on {address}:{port}"
            time.sleep(0.05)
    assert response.status_code == 200
    del runtime


def _non_loopback_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("192.0.2.1", 9))  # no packet is sent: picks the outgoing address
        except OSError:
            return None
        address = sock.getsockname()[0]
    return None if address.startswith("127.") else address


# --- the proxy's configuration ------------------------------------------------------------


def directive(name: str, text: str = NGINX_TEMPLATE) -> list[str]:
    return [
        m.group(1).strip()
        for m in re.finditer(rf"^\s*{name}\s+((?:\$\{{\w+\}}|[^;{{}}])*);", text, re.M)
    ]


def test_the_proxy_config_has_timeouts_limits_tls_and_overwrites_forwarded_for() -> None:
    assert directive("client_header_timeout") == ["10s"]
    assert directive("client_body_timeout") == ["10s"]
    assert directive("keepalive_timeout") == ["15s", "4s"]  # clients; the upstream
    assert directive("send_timeout") == ["10s"]
    assert directive("client_max_body_size") == ["1m"]
    # A dribbling client reserves this much memory per connection; bigger bodies spill
    # to a temporary file.
    assert directive("client_body_buffer_size") == ["16k"]
    assert 1024 * 1024 == Settings.model_fields["max_body_bytes"].default
    assert directive("large_client_header_buffers") == ["4 16k"]
    assert directive("limit_conn") == ["per_client ${OVERTIME_PROXY_CONNECTIONS_PER_CLIENT}"]
    assert directive("ssl_certificate") == ["/etc/nginx/certs/fullchain.pem"]
    assert directive("ssl_certificate_key") == ["/etc/nginx/certs/privkey.pem"]
    assert directive("server") == ["api:8000"]
    assert directive("proxy_pass") == ["http://overtime_api"]
    headers = directive("proxy_set_header")
    assert "X-Forwarded-For $remote_addr" in headers
    assert "$proxy_add_x_forwarded_for" not in NGINX_TEMPLATE  # that one appends
    assert directive("proxy_request_buffering") == ["on"]
    # The upstream's idle connections close before the API's keep-alive closes them.
    api_keep_alive = float(SERVICES["api"]["environment"]["OVERTIME_HTTP_KEEP_ALIVE_SECONDS"])
    assert float(directive("keepalive_timeout")[1].removesuffix("s")) < api_keep_alive


def _blocks(text: str, opening: str) -> list[str]:
    """The bodies of every ``opening { ... }`` block (nginx's braces nest)."""
    bodies = []
    for match in re.finditer(opening, text):
        start = text.index("{", match.end()) + 1
        depth, end = 1, start
        while depth:
            depth += {"{": 1, "}": -1}.get(text[end], 0)
            end += 1
        bodies.append(text[start : end - 1])
    return bodies


def test_hsts_is_on_every_answer_of_the_tls_server() -> None:
    # add_header in a location drops the server's add_header: every location that sets
    # its own (Retry-After on nginx's 503s) must repeat HSTS.
    [tls_server] = [
        b for b in _blocks(NGINX_TEMPLATE, r"\bserver\s*(?=\{)") if "listen 443 ssl;" in b
    ]
    hsts = 'Strict-Transport-Security "max-age=31536000" always'
    assert hsts in directive("add_header", tls_server)
    locations = _blocks(tls_server, r"\blocation\s+[^{]*")
    assert len(locations) >= 4
    for body in locations:
        headers = directive("add_header", body)
        assert not headers or hsts in headers, body


def test_the_per_client_limit_is_the_apis_admission_bound() -> None:
    # The telephony platform is one address: nginx's per-client limit is its cap. The
    # API's own admission bound is the one that sheds (and counts) first.
    default = re.fullmatch(
        r"\$\{OVERTIME_PROXY_CONNECTIONS_PER_CLIENT:-(\d+)\}",
        SERVICES["proxy"]["environment"]["OVERTIME_PROXY_CONNECTIONS_PER_CLIENT"],
    )
    assert default is not None, "the per-client limit needs a default"
    per_client = int(default.group(1))
    assert per_client == Settings.model_fields["admission_max_pending"].default
    assert per_client <= Settings.model_fields["http_limit_concurrency"].default
    # Each proxied request holds two connections (client and upstream).
    [worker_connections] = directive("worker_connections")
    assert 2 * per_client <= int(worker_connections)


def test_the_proxy_service_mounts_the_template_and_sets_its_variables() -> None:
    proxy = SERVICES["proxy"]
    assert proxy["image"].startswith("nginx:")
    assert (
        "./deploy/nginx.conf.template:/etc/nginx/templates/nginx.conf.template:ro"
        in (proxy["volumes"])
    )
    assert proxy["environment"]["NGINX_ENVSUBST_OUTPUT_DIR"] == "/etc/nginx"
    used = set(re.findall(r"\$\{(OVERTIME_[A-Z_]+)\}", NGINX_TEMPLATE))
    assert used == {"OVERTIME_PUBLIC_HOST", "OVERTIME_PROXY_CONNECTIONS_PER_CLIENT"}
    assert used <= set(proxy["environment"])
    assert re.fullmatch(proxy["environment"]["NGINX_ENVSUBST_FILTER"] + ".*", "OVERTIME_X")
    assert proxy["depends_on"]["api"]["condition"] == "service_healthy"


# --- the proxy, running ----------------------------------------------------------------------

# `make test` unpacks Debian's nginx into the virtualenv (the Makefile's nginx target).
_VENV_NGINX = ROOT / ".venv" / "nginx" / "usr" / "sbin" / "nginx"
NGINX = (
    os.environ.get("OVERTIME_TEST_NGINX")
    or shutil.which("nginx")
    or (str(_VENV_NGINX) if _VENV_NGINX.exists() else None)
)
PUBLIC_HOST = "billing.test"


@dataclass
class Proxy:
    http_port: int
    https_port: int
    seen: list[dict[str, str]]

    def client(self, host: str = PUBLIC_HOST) -> httpx.Client:
        return httpx.Client(
            base_url=f"https://127.0.0.1:{self.https_port}",
            headers={"Host": host},
            verify=False,
            timeout=10,
        )

    def sni(self, host: str = PUBLIC_HOST) -> dict[str, Any]:
        return {"sni_hostname": host}


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[dict[str, str]]

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.seen.append({k.lower(): v for k, v in self.headers.items()})
        if self.path == "/slow":
            time.sleep(1.5)
        body = json.dumps({"path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = _answer
    do_POST = _answer

    def log_message(self, *_: Any) -> None:
        pass


def _self_signed(directory: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, PUBLIC_HOST)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(PUBLIC_HOST)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    (directory / "fullchain.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "privkey.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def render_for_test(tmp: Path, upstream: int, http_port: int, https_port: int) -> str:
    """The template as the image renders it, moved to this machine's ports and paths.

    Only places and the header timeout change (10 s -> 1 s, to see the cut quickly); the
    limits, headers and routing are the file's own.
    """
    text = NGINX_TEMPLATE.replace("${OVERTIME_PUBLIC_HOST}", PUBLIC_HOST)
    text = text.replace("${OVERTIME_PROXY_CONNECTIONS_PER_CLIENT}", "2")
    text = text.replace("server api:8000;", f"server 127.0.0.1:{upstream};")
    text = re.sub(r"listen 80\b", f"listen 127.0.0.1:{http_port}", text)
    text = re.sub(r"listen 443\b", f"listen 127.0.0.1:{https_port}", text)
    text = text.replace("client_header_timeout 10s;", "client_header_timeout 1s;")
    text = text.replace("/var/run/nginx.pid", str(tmp / "nginx.pid"))
    text = text.replace("/var/log/nginx/", f"{tmp}/")
    text = text.replace("/etc/nginx/certs/", f"{tmp}/")
    text = text.replace("/var/www/acme", str(tmp / "acme"))
    temp_paths = "".join(
        f"    {kind}_temp_path {tmp}/{kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    text = text.replace("http {\n", "http {\n" + temp_paths, 1)
    if os.geteuid() == 0:
        # As root nginx's workers run as nobody, who cannot enter pytest's private
        # temporary directory to spill a body to a file (the image's paths are its own).
        text = "user root;\n" + text
    return text


@contextlib.contextmanager
def _nginx(tmp: Path, upstream_port: int) -> Iterator[tuple[int, int]]:
    """The rendered template run by a real nginx; yields its (http, https) ports."""
    if NGINX is None:
        pytest.skip(
            "no nginx on this machine (apt-get install nginx-light, or OVERTIME_TEST_NGINX)"
        )
    (tmp / "acme").mkdir()
    _self_signed(tmp)
    http_port, https_port = free_port(), free_port()
    config = tmp / "nginx.conf"
    config.write_text(render_for_test(tmp, upstream_port, http_port, https_port))
    proc = subprocess.Popen(
        [NGINX, "-p", str(tmp), "-c", str(config), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while not _answers(https_port):
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "nginx did not start"
            time.sleep(0.05)
        yield http_port, https_port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    seen: list[dict[str, str]] = []
    handler = type("EchoHandler", (Echo,), {"seen": seen})
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    try:
        with _nginx(tmp_path_factory.mktemp("nginx"), upstream.server_address[1]) as ports:
            yield Proxy(*ports, seen)
    finally:
        upstream.shutdown()


def _answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def test_the_proxy_overwrites_what_the_client_claims(proxy: Proxy) -> None:
    proxy.seen.clear()
    with proxy.client() as client:
        response = client.get(
            "/healthz",
            headers={
                "X-Forwarded-For": "203.0.113.7, 127.0.0.1",
                "Forwarded": "for=198.51.100.1",
                "X-Forwarded-Host": "evil.test",
            },
            extensions=proxy.sni(),
        )
    assert response.status_code == 200
    [seen] = proxy.seen
    assert seen["x-forwarded-for"] == "127.0.0.1"  # the real peer, nothing the client said
    assert "forwarded" not in seen and "x-forwarded-host" not in seen
    assert seen["host"] == PUBLIC_HOST and seen["x-forwarded-proto"] == "https"
    assert response.headers["strict-transport-security"].startswith("max-age=")


def test_the_proxy_refuses_large_bodies_and_hides_metrics(proxy: Proxy) -> None:
    proxy.seen.clear()
    with proxy.client() as client:
        too_large = client.post(
            "/v1/calls/authorize",
            content=b"x" * (1024 * 1024 + 1),
            headers={"Content-Type": "application/json"},
            extensions=proxy.sni(),
        )
        metrics = client.get("/metrics", extensions=proxy.sni())
        fits = client.post("/v1/calls/usage", content=b"x" * 1000, extensions=proxy.sni())
        # Beyond client_body_buffer_size (16k): buffered in a temporary file, still whole.
        spilled = client.post("/v1/calls/usage", content=b"y" * 300_000, extensions=proxy.sni())
    assert too_large.status_code == 413
    assert too_large.json()["error"] == "body_too_large"
    assert too_large.headers["strict-transport-security"].startswith("max-age=")
    assert metrics.status_code == 404 and metrics.json()["error"] == "not_found"
    assert fits.status_code == 200 and spilled.status_code == 200
    assert [seen.get("content-length") for seen in proxy.seen] == ["1000", "300000"]


def test_the_proxy_answers_503_with_hsts_when_the_api_is_down(tmp_path: Path) -> None:
    with _nginx(tmp_path, free_port()) as (_, https_port):  # nothing listens upstream
        proxy = Proxy(0, https_port, [])
        with proxy.client() as client:
            down = client.get("/healthz", extensions=proxy.sni())
    assert down.status_code == 503
    assert down.json()["error"] == "unavailable"
    assert down.headers["retry-after"] == "1"
    assert down.headers["strict-transport-security"].startswith("max-age=")


def test_the_proxy_cuts_off_slow_headers(proxy: Proxy) -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection(("127.0.0.1", proxy.https_port), timeout=5)
    with context.wrap_socket(raw, server_hostname=PUBLIC_HOST) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: billing.test\r\nX-Slow: 1")
        started = time.monotonic()
        try:
            answer = sock.recv(1024)
        except (ConnectionResetError, ssl.SSLError):
            answer = b""
        elapsed = time.monotonic() - started
    assert elapsed < 4, f"held for {elapsed:.1f} s"
    assert answer == b"" or answer.startswith(b"HTTP/1.1 408")


def test_the_proxy_limits_requests_in_progress_per_client(proxy: Proxy) -> None:
    def slow(_: int) -> httpx.Response:
        with proxy.client() as client:
            return client.get("/slow", extensions=proxy.sni())

    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(slow, range(6)))
    statuses = sorted(a.status_code for a in answers)
    assert 200 in statuses and 503 in statuses, statuses
    refused = next(a for a in answers if a.status_code == 503)
    assert refused.json()["error"] == "overloaded"
    assert refused.headers["retry-after"] == "1"
    assert refused.headers["strict-transport-security"].startswith("max-age=")


def test_the_proxy_answers_only_its_host(proxy: Proxy) -> None:
    # Another SNI: no TLS handshake at all.
    with proxy.client("evil.test") as client, pytest.raises(httpx.ConnectError):
        client.get("/healthz", extensions=proxy.sni("evil.test"))
    # Plain HTTP: the public host is sent to HTTPS, any other host gets no answer.
    plain = httpx.get(
        f"http://127.0.0.1:{proxy.http_port}/app?x=1", headers={"Host": PUBLIC_HOST}, timeout=5
    )
    assert plain.status_code == 308
    assert plain.headers["location"] == f"https://{PUBLIC_HOST}/app?x=1"
    # 444: closed (reset, as reset_timedout_connection is on) without a byte of answer.
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        httpx.get(f"http://127.0.0.1:{proxy.http_port}/", headers={"Host": "evil.test"}, timeout=5)
