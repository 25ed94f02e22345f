"""How Overtime reaches Temporal: its settings, or Temporal's own client configuration.

``overtime.temporal.client_profile`` describes the connection in the SDK's terms
(``temporalio.envconfig``), so the certificate files are read and TLS decided the way
Temporal's own clients do; every worker and API test connects through it to the dev server.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.service import TLSConfig

from overtime.settings import Settings
from overtime.temporal import client_profile

# Temporal's client configuration only, never the database.
pytestmark = pytest.mark.sqlite_only


def connect_config(**values: object) -> dict[str, object]:
    return dict(client_profile(Settings(**values)).to_client_connect_config())  # type: ignore[arg-type]


def test_the_local_dev_server_plain() -> None:
    assert connect_config(temporal_host="127.0.0.1", temporal_port=7233) == {
        "target_host": "127.0.0.1:7233",
        "namespace": "default",
        "tls": False,
    }


def test_mtls_reads_the_certificate_files(tmp_path: Path) -> None:
    files = {}
    for name in ("ca", "cert", "key"):
        files[name] = tmp_path / f"{name}.pem"
        files[name].write_bytes(f"-----{name}-----".encode())
    config = connect_config(
        temporal_host="ns.tmprl.cloud",
        temporal_port=7233,
        temporal_namespace="overtime.a1b2c",
        temporal_tls=True,
        temporal_tls_ca=str(files["ca"]),
        temporal_tls_cert=str(files["cert"]),
        temporal_tls_key=str(files["key"]),
    )
    tls = config["tls"]
    assert isinstance(tls, TLSConfig)
    assert (tls.server_root_ca_cert, tls.client_cert, tls.client_private_key) == (
        b"-----ca-----",
        b"-----cert-----",
        b"-----key-----",
    )
    assert (config["target_host"], config["namespace"]) == ("ns.tmprl.cloud:7233", "overtime.a1b2c")


def test_an_api_key_means_tls_unless_switched_off() -> None:
    cloud = connect_config(temporal_api_key="key-1")
    assert (cloud["api_key"], cloud["tls"]) == ("key-1", True)
    # A self-hosted frontend behind a plain proxy that checks keys: TLS explicitly off.
    plain = connect_config(temporal_api_key="key-1", temporal_tls=False)
    assert (plain["api_key"], plain["tls"]) == ("key-1", False)


def test_a_profile_of_temporals_own_configuration_replaces_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    toml = tmp_path / "temporal.toml"
    toml.write_text(
        '[profile.prod]\naddress = "prod.example:7233"\nnamespace = "overtime-prod"\n'
        'api_key = "key-from-file"\n'
    )
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(toml))
    config = connect_config(temporal_profile="prod", temporal_host="ignored")
    assert config == {
        "target_host": "prod.example:7233",
        "namespace": "overtime-prod",
        "api_key": "key-from-file",
        "tls": True,
    }
    # Temporal's variables override its file, as for the temporal CLI.
    monkeypatch.setenv("TEMPORAL_NAMESPACE", "overtime-staging")
    assert connect_config(temporal_profile="prod")["namespace"] == "overtime-staging"
    # A profile that is not there is an error at start-up, not a silent default.
    with pytest.raises(Exception, match="Profile 'nope' not found"):
        connect_config(temporal_profile="nope")
