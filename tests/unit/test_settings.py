"""Settings: sources and their precedence, normalisation, and every refusal of an unsafe value."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from autovibe.errors import AutovibeInvalid
from autovibe.settings import Settings, SettingsInvalid, load_settings, normalize_fingerprint

TOKEN = "automation@pve!autovibe=5f0c3b8e-2d4a-4c1e-9a37-0b6f1d2e3c4a"
SECRET = "5f0c3b8e-2d4a-4c1e-9a37-0b6f1d2e3c4a"
FP_HEX = "ab" * 32
FP_COLONS = ":".join(["AB"] * 32)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No AUTOVIBE_* from the developer's shell; XDG dirs inside tmp_path so no real config is read."""
    for key in list(os.environ):
        if key.startswith("AUTOVIBE_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    return tmp_path


def write_config(path: Path, text: str, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def default_config(tmp_path: Path) -> Path:
    return tmp_path / "config" / "autovibe" / "config.toml"


# ---- defaults and sources -------------------------------------------------------------------------


def test_defaults_mean_the_embedded_simulator_under_xdg_data(tmp_path: Path) -> None:
    settings = load_settings()
    assert settings.pve_url is None
    assert settings.is_simulated
    assert settings.verify_tls is True
    assert settings.sim_speed == 20.0
    assert settings.data_dir == tmp_path / "data" / "autovibe"
    assert settings.sim_state_path == tmp_path / "data" / "autovibe" / "sim-state.json"
    assert settings.log_level == "warning"


def test_environment_sets_fields_including_nested_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOVIBE_PVE_URL", "https://pve.example.com:8006")
    monkeypatch.setenv("AUTOVIBE_PVE_TOKEN", TOKEN)
    monkeypatch.setenv("AUTOVIBE_TIMEOUTS__READ", "61")
    monkeypatch.setenv("AUTOVIBE_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("AUTOVIBE_NODE_CONCURRENCY", "3")
    settings = load_settings()
    assert settings.pve_url == "https://pve.example.com:8006"
    assert not settings.is_simulated
    assert settings.pve_token is not None and settings.pve_token.get_secret_value() == TOKEN
    assert settings.timeouts.read == 61.0
    assert settings.timeouts.connect == 5.0
    assert settings.log_level == "debug"
    assert settings.node_concurrency == 3


def test_empty_environment_values_count_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOVIBE_PVE_URL", "")
    assert load_settings().is_simulated


def test_config_file_in_xdg_config_dir_is_read(tmp_path: Path) -> None:
    write_config(default_config(tmp_path), 'sim_speed = 5.0\nlog_level = "info"\n[timeouts]\nconnect = 2\n')
    settings = load_settings()
    assert settings.sim_speed == 5.0
    assert settings.log_level == "info"
    assert settings.timeouts.connect == 2.0


def test_autovibe_config_env_points_at_another_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_config(default_config(tmp_path), "sim_speed = 5.0\n")
    other = write_config(tmp_path / "other.toml", "sim_speed = 7.0\n")
    monkeypatch.setenv("AUTOVIBE_CONFIG", str(other))
    assert load_settings().sim_speed == 7.0


def test_config_flag_beats_autovibe_config_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AUTOVIBE_CONFIG", str(write_config(tmp_path / "env.toml", "sim_speed = 7.0\n")))
    flag = write_config(tmp_path / "flag.toml", "sim_speed = 9.0\n")
    assert load_settings(config_path=flag).sim_speed == 9.0


def test_precedence_is_flags_then_env_then_file_then_defaults(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    write_config(default_config(tmp_path), "sim_speed = 2.0\nnode_concurrency = 2\nlog_level = 'error'\n")
    monkeypatch.setenv("AUTOVIBE_SIM_SPEED", "3.0")
    monkeypatch.setenv("AUTOVIBE_NODE_CONCURRENCY", "4")
    settings = load_settings(overrides={"sim_speed": 4.0, "node_concurrency": None})
    assert settings.sim_speed == 4.0  # flag over env and file
    assert settings.node_concurrency == 4  # env over file (a None flag means "not given")
    assert settings.log_level == "error"  # file over default
    assert settings.timeouts.task == 600.0  # default


def test_nested_values_merge_across_env_and_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_config(default_config(tmp_path), "[timeouts]\nconnect = 2\nread = 20\n")
    monkeypatch.setenv("AUTOVIBE_TIMEOUTS__READ", "40")
    timeouts = load_settings().timeouts
    assert (timeouts.connect, timeouts.read) == (2.0, 40.0)


def test_sim_state_path_follows_data_dir_unless_set(tmp_path: Path) -> None:
    assert Settings(data_dir=tmp_path / "d").sim_state_path == tmp_path / "d" / "sim-state.json"
    explicit = Settings(data_dir=tmp_path / "d", sim_state_path=tmp_path / "s.json")
    assert explicit.sim_state_path == tmp_path / "s.json"


def test_home_in_paths_is_expanded() -> None:
    assert Settings(data_dir="~/av").data_dir == Path.home() / "av"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://pve1.example.com:8006/", "https://pve1.example.com:8006"),
        ("https://pve1.example.com:8006/api2/json", "https://pve1.example.com:8006"),
        ("http://127.0.0.1:8006", "http://127.0.0.1:8006"),
        ("http://localhost:8006", "http://localhost:8006"),
        ("http://[::1]:8006", "http://[::1]:8006"),
    ],
)
def test_pve_url_is_normalised(given: str, expected: str) -> None:
    assert Settings(pve_url=given, pve_token=TOKEN).pve_url == expected


@pytest.mark.parametrize("given", [FP_HEX, FP_COLONS, FP_COLONS.lower(), f"SHA256 Fingerprint={FP_COLONS}"])
def test_fingerprint_accepts_pve_and_openssl_spellings(given: str) -> None:
    assert normalize_fingerprint(given) == FP_COLONS


def test_verify_tls_false_is_accepted_with_a_pinned_fingerprint() -> None:
    settings = Settings(pve_url="https://pve1:8006", pve_token=TOKEN, verify_tls=False, fingerprint=FP_HEX)
    assert settings.fingerprint == FP_COLONS


def test_password_login_is_accepted() -> None:
    settings = Settings(pve_url="https://pve1:8006", pve_user="root@pam", pve_password="correct horse")
    assert settings.pve_user == "root@pam"


def test_secrets_stay_out_of_repr() -> None:
    settings = Settings(pve_url="https://pve1:8006", pve_token=TOKEN)
    assert SECRET not in repr(settings)
    assert SECRET not in str(settings)


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(ValidationError):
        settings.sim_speed = 1.0  # type: ignore[misc]


# ---- refusals --------------------------------------------------------------------------------------

REMOTE = {"pve_url": "https://pve1:8006", "pve_token": TOKEN}


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({"verify_tls": False}, "fingerprint"),
        ({**REMOTE, "verify_tls": False}, "attacker"),
        ({"pve_url": "http://pve1.example.com:8006", "pve_token": TOKEN}, "clear text"),
        ({"pve_url": "http://10.0.0.5:8006", "pve_token": TOKEN}, "loopback"),
        ({"pve_url": "ftp://pve1:8006", "pve_token": TOKEN}, "https://"),
        ({"pve_url": "https://root:pw@pve1:8006", "pve_token": TOKEN}, "credentials"),
        ({"pve_url": "https://pve1:8006/somewhere", "pve_token": TOKEN}, "path"),
        ({"pve_url": "https://pve1:8006"}, "no credentials"),
        ({**REMOTE, "pve_token": "root@pam!autovibe=changeme"}, "placeholder"),
        ({**REMOTE, "pve_token": "root@pam!autovibe=SECRET"}, "placeholder"),
        ({**REMOTE, "pve_token": "root@pam=abc"}, "USER@REALM!TOKENNAME=SECRET"),
        ({**REMOTE, "pve_token": "just-a-secret"}, "USER@REALM!TOKENNAME=SECRET"),
        ({"pve_url": "https://pve1:8006", "pve_user": "root@pam", "pve_password": "password"}, "placeholder"),
        (
            {"pve_url": "https://pve1:8006", "pve_user": "root@pam", "pve_password": "Changeme "},
            "placeholder",
        ),
        ({"pve_url": "https://pve1:8006", "pve_user": "root@pam"}, "go together"),
        ({"pve_url": "https://pve1:8006", "pve_user": "root", "pve_password": "x9!kq"}, "USER@REALM"),
        ({**REMOTE, "pve_user": "root@pam", "pve_password": "x9!kq"}, "not both"),
        ({**REMOTE, "fingerprint": "AB:CD"}, "32 bytes"),
        ({**REMOTE, "fingerprint": "zz" * 32}, "32 bytes"),
        ({**REMOTE, "fingerprint": "ab" * 33}, "32 bytes"),
        ({**REMOTE, "ca_bundle": "/nonexistent/ca.pem"}, "not a readable file"),
        ({"sim_speed": 0}, "greater than 0"),
        ({"node_concurrency": 0}, "greater than or equal to 1"),
        ({"log_level": "chatty"}, "debug"),
        ({"timeouts": {"connect": -1}}, "greater than 0"),
    ],
)
def test_unsafe_or_broken_values_are_refused(values: dict[str, object], says: str) -> None:
    with pytest.raises(SettingsInvalid, match=r"invalid setting") as caught:
        load_settings(overrides=values)
    assert says in caught.value.message
    assert caught.value.hint is not None and "AUTOVIBE_" in caught.value.hint


def test_fingerprint_and_ca_bundle_together_are_refused(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    with pytest.raises(SettingsInvalid, match="not both"):
        load_settings(overrides={**REMOTE, "fingerprint": FP_HEX, "ca_bundle": ca})


def test_refusals_are_the_invalid_kind_so_the_cli_exits_2() -> None:
    with pytest.raises(SettingsInvalid) as caught:
        load_settings(overrides={"verify_tls": False})
    assert isinstance(caught.value, AutovibeInvalid)
    assert isinstance(caught.value, ValueError)


def test_a_refused_secret_is_never_echoed() -> None:
    leaky = "root@pam!autovibe=has spaces 8c1e"
    with pytest.raises(SettingsInvalid) as caught:
        load_settings(overrides={**REMOTE, "pve_token": leaky})
    assert "8c1e" not in str(caught.value) and "8c1e" not in (caught.value.hint or "")
    with pytest.raises(ValidationError) as raw:
        Settings(pve_url="https://pve1:8006", pve_token=leaky)
    assert "8c1e" not in str(raw.value)


# ---- the config file ---------------------------------------------------------------------------------


def test_unknown_key_in_config_file_is_refused_with_a_suggestion(tmp_path: Path) -> None:
    write_config(default_config(tmp_path), "verify_tsl = false\n")
    with pytest.raises(SettingsInvalid, match="unknown setting 'verify_tsl'") as caught:
        load_settings()
    assert caught.value.hint == "did you mean 'verify_tls'?"


def test_broken_toml_is_refused_with_the_file_named(tmp_path: Path) -> None:
    path = write_config(default_config(tmp_path), "sim_speed = = 1\n")
    with pytest.raises(SettingsInvalid, match="cannot read config file") as caught:
        load_settings()
    assert str(path) in caught.value.message


def test_explicit_config_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(SettingsInvalid, match="does not exist"):
        load_settings(config_path=tmp_path / "missing.toml")


def test_config_file_values_are_validated_too(tmp_path: Path) -> None:
    write_config(default_config(tmp_path), "verify_tls = false\n")
    with pytest.raises(SettingsInvalid, match="verify_tls=false"):
        load_settings()


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
def test_config_file_with_a_secret_must_not_be_readable_by_others(tmp_path: Path) -> None:
    text = f'pve_url = "https://pve1:8006"\npve_token = "{TOKEN}"\n'
    path = write_config(default_config(tmp_path), text, mode=0o644)
    with pytest.raises(SettingsInvalid, match="other users can read it") as caught:
        load_settings()
    assert caught.value.hint == f"run: chmod 600 {path}"
    path.chmod(0o600)
    assert load_settings().pve_url == "https://pve1:8006"
