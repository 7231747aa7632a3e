"""Log redaction: secret-looking keys, token-like text, and registered values are masked; prose is not."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from autovibe.security.secrets import (
    MASK,
    RedactingFilter,
    config_permissions_warning,
    forget_registered_secrets,
    redact_processor,
    redact_text,
    register_secret,
    register_settings_secrets,
)
from autovibe.settings import Settings

UUID = "5f3b0c1e-9d2a-4c57-8a61-0b6f2a9e7d10"
FERNET = "gAAAAABmZ3xK1bQ2c3d4e5f6g7h8i9j0kLmNoPqRsTuVwXyZ_-abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGH=="
TICKET = "PVE:root@pam:65A1B2C3::c2lnbmF0dXJlK3dpdGgvc2xhc2hlcz0="


@pytest.fixture(autouse=True)
def empty_registry() -> Iterator[None]:
    forget_registered_secrets()
    yield
    forget_registered_secrets()


def process(**event: object) -> dict[str, object]:
    return dict(redact_processor(None, "info", dict(event)))


@pytest.mark.parametrize(
    ("text", "secret", "kept"),
    [
        (f"Authorization: PVEAPIToken=automation@pve!autovibe={UUID}", UUID, "automation@pve!autovibe="),
        (f"using token automation@pve!autovibe={UUID} now", UUID, "automation@pve!autovibe="),
        (f"Cookie: PVEAuthCookie={TICKET}; path=/", TICKET, "PVEAuthCookie="),
        (f"ticket {TICKET} issued", TICKET, "issued"),
        ("CSRFPreventionToken: 65A1B2C3:Zm9vYmFyYmF6cXV4", "Zm9vYmFyYmF6cXV4", "CSRFPreventionToken: "),
        ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig-nature_x", "eyJhbGciOiJIUzI1NiJ9", "Bearer "),
        ("sent Bearer abc.def.ghi-jkl to the hub", "abc.def.ghi-jkl", "to the hub"),
        ("api token avt_Zx9Qw3Er5Ty7Ui9Op1As", "Zx9Qw3Er5Ty7Ui9Op1As", "avt_"),
        (f"ciphertext {FERNET} stored", FERNET[6:40], "stored"),
        ("key sk-ant-api03-AbCdEfGhIjKlMnOpQrStUv-wx", "AbCdEfGhIjKlMnOpQrStUv", "key "),
        ("key sk-proj1234567890abcdefXYZ in env", "proj1234567890abcdefXYZ", "in env"),
        ("https://hook.example/alert?secret=s3cr3t-value&x=1", "s3cr3t-value", "&x=1"),
        ("login with password=hunter2!! failed", "hunter2", "failed"),
        ("refresh token=abc123def456 expired", "abc123def456", "expired"),
        ('{"password": "p4ss w0rd"}', "p4ss", '{"password": "'),
        ("webhook_secret=whsec_0123456789", "whsec_0123456789", "webhook_secret="),
        ("postgresql+psycopg://autovibe:db-pa55@db.example:5432/av", "db-pa55", "db.example:5432"),
    ],
)
def test_token_like_text_is_masked(text: str, secret: str, kept: str) -> None:
    redacted = redact_text(text)
    assert secret not in redacted
    assert MASK in redacted
    assert kept in redacted


@pytest.mark.parametrize(
    "text",
    [
        "cloned VM 101 from template 9000 on pve1",
        "GET https://pve1:8006/api2/json/nodes/pve1/qemu/101/status/current 200",
        "task UPID:pve1:0000A1B2:00C3D4E5:65A1B2C3:qmclone:101:root@pam: finished OK",
        "re-encrypted 3 secrets with a new key",
        "user root@pam logged in; tokens are listed under Datacenter",
        "the skeleton task-runner finished",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact_text(text) == text


def test_values_under_secret_looking_keys_are_masked() -> None:
    event = process(event="login", pve_token="x@pve!y=z", Password="a", api_key=1, csrf_prevention="c")
    assert event == {
        "event": "login",
        "pve_token": MASK,
        "Password": MASK,
        "api_key": MASK,
        "csrf_prevention": MASK,
    }


def test_none_under_a_secret_key_stays_none() -> None:
    assert process(event="no token", token=None)["token"] is None


def test_nested_values_and_objects_are_masked() -> None:
    event = process(
        event="request",
        params={"password": "hunter22", "vmid": 101, "note": f"with {FERNET}"},
        headers=[("Authorization", f"PVEAPIToken=root@pam!t={UUID}")],
        error=ValueError(f"refused secret={UUID}"),
        count=3,
    )
    assert event["params"] == {"password": MASK, "vmid": 101, "note": f"with {MASK}"}
    assert UUID not in repr(event["headers"])
    assert UUID not in str(event["error"])
    assert event["count"] == 3


def test_an_exception_traceback_is_formatted_and_masked() -> None:
    try:
        raise RuntimeError(f"PVE refused PVEAPIToken=root@pam!t={UUID}")
    except RuntimeError as exc:
        event = process(event="failed", exc_info=exc)
    assert "exc_info" not in event
    assert "RuntimeError" in str(event["exception"])
    assert UUID not in str(event["exception"])


def test_registered_values_are_masked_exactly_wherever_they_appear() -> None:
    register_secret("plain words 42")
    register_secret("tiny")
    register_secret("abc")  # too short to register: it would mask bits of every line
    text = "said plain words 42 and tiny, x=plain words 42!, abc"
    assert redact_text(text) == f"said {MASK} and {MASK}, x={MASK}!, abc"
    assert process(event="note", detail="id:plain words 42")["detail"] == f"id:{MASK}"


def test_a_registered_value_is_masked_in_its_url_encoded_form_too() -> None:
    register_secret("p@ss/word 1")
    assert redact_text("dsn=...p%40ss%2Fword%201...") == f"dsn=...{MASK}..."


def test_settings_secrets_are_registered() -> None:
    settings = Settings(
        pve_url="https://pve1.example:8006",
        pve_token=SecretStr(f"automation@pve!autovibe={UUID}"),
        database_url=SecretStr("postgresql+psycopg://av:S%40lt-pepper@db/av"),
        usage={"webhook_url": "https://hooks.example/x", "webhook_secret": "hook-signing-key"},
    )
    register_settings_secrets(settings)
    text = redact_text(f"uuid {UUID}; pw S@lt-pepper / S%40lt-pepper; hook hook-signing-key")
    for secret in (UUID, "S@lt-pepper", "S%40lt-pepper", "hook-signing-key"):
        assert secret not in text


def test_stdlib_records_are_masked_by_the_filter() -> None:
    record = logging.LogRecord("httpx", logging.DEBUG, __file__, 1, "sent %s", (f"Bearer {UUID}",), None)
    assert RedactingFilter().filter(record)
    assert record.getMessage() == f"sent Bearer {MASK}"


@pytest.mark.skipif(not hasattr(Path, "chmod"), reason="posix modes")
@pytest.mark.parametrize(
    ("content", "mode", "warned"),
    [
        ('[usage]\nwebhook_url = "https://h.example"\nwebhook_secret = "whsec-1"\n', 0o644, True),
        ('database_url = "postgresql+psycopg://u:pw-1@db/av"\n', 0o640, True),
        ('database_url = "postgresql+psycopg://u@db/av"\n', 0o644, False),  # no password in it
        ('[usage]\nwebhook_secret = "whsec-1"\n', 0o600, False),
        ('log_level = "debug"\n', 0o644, False),
    ],
)
def test_config_permissions_warning(tmp_path: Path, content: str, mode: int, warned: bool) -> None:
    path = tmp_path / "config.toml"
    path.write_text(content)
    path.chmod(mode)
    warning = config_permissions_warning(path)
    assert (warning is not None) == warned
    if warning:
        assert f"chmod 600 {path}" in warning
        assert "whsec-1" not in warning and "pw-1" not in warning


def test_no_warning_for_a_missing_config_file(tmp_path: Path) -> None:
    assert config_permissions_warning(tmp_path / "absent.toml") is None
