"""Typed settings, read once at the edge and passed down; validators refuse unsafe values.

Sources, highest priority first: CLI flags (``overrides``), ``AUTOVIBE_*`` environment variables
(nested fields with ``__``: ``AUTOVIBE_TIMEOUTS__READ=60``), the TOML file
(``$XDG_CONFIG_HOME/autovibe/config.toml``, or the path in ``AUTOVIBE_CONFIG`` / ``--config``), then
defaults. Build them with :func:`load_settings`; nothing builds settings at import time.

``pve_url`` unset means "use the embedded simulator" (see ``composition.py``).
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
import tomllib
from collections.abc import Mapping
from contextvars import ContextVar
from difflib import get_close_matches
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import platformdirs
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, InitSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from autovibe.errors import AutovibeInvalid

APP_NAME = "autovibe"
CONFIG_ENV = "AUTOVIBE_CONFIG"

# Values people paste from examples. A real PVE token secret is a UUID; a real password is not these.
PLACEHOLDER_SECRETS = frozenset({"changeme", "change-me", "change_me", "secret", "password", "xxx", "todo"})

# PVE API token id: user@realm!tokenname (pve-access-control AccessControl.pm $token_full_regex).
_TOKEN_RE = re.compile(
    r"^(?P<user>[^\s:/]+@[A-Za-z][A-Za-z0-9.\-_]+)!(?P<name>[A-Za-z][A-Za-z0-9.\-_]+)=(?P<secret>\S+)$"
)
_USERID_RE = re.compile(r"^[^\s:/]+@[A-Za-z][A-Za-z0-9.\-_]+$")
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})

# Values read from the TOML file by load_settings(); a ContextVar because pydantic-settings builds its
# sources in a classmethod that cannot receive per-call arguments.
_FILE_VALUES: ContextVar[Mapping[str, Any] | None] = ContextVar("autovibe_file_values", default=None)


class SettingsInvalid(AutovibeInvalid, ValueError):
    """The settings are incomplete or unsafe; ``message`` names the setting, ``hint`` where to fix it."""


class Timeouts(BaseModel):
    """Seconds to wait for PVE: TCP/TLS connect, one HTTP response, one async task (clone, snapshot…)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    connect: float = Field(default=5.0, gt=0, le=300)
    read: float = Field(default=30.0, gt=0, le=3600)
    task: float = Field(default=600.0, gt=0, le=86400)


def default_config_path() -> Path:
    """``config.toml`` in the XDG config dir (``~/.config/autovibe/config.toml`` on Linux)."""
    return Path(platformdirs.user_config_dir(APP_NAME)) / "config.toml"


def default_data_dir() -> Path:
    """The XDG data dir (``~/.local/share/autovibe`` on Linux): simulator state, later the SQLite store."""
    return Path(platformdirs.user_data_dir(APP_NAME))


def _is_placeholder(secret: str) -> bool:
    return secret.strip().lower() in PLACEHOLDER_SECRETS


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def normalize_fingerprint(value: str) -> str:
    """Return a SHA-256 fingerprint as PVE shows it (``AB:CD:…``, 32 upper-case hex pairs).

    Accepts the colon form, a bare 64-digit hex string, and an ``openssl``-style
    ``SHA256 Fingerprint=`` prefix. Raises ``ValueError`` for anything that is not 32 bytes of hex.
    """
    text = value.strip()
    if "=" in text:
        text = text.split("=", 1)[1]
    digits = text.replace(":", "").replace(" ", "")
    if not re.fullmatch(r"[0-9A-Fa-f]{64}", digits):
        raise ValueError(
            "fingerprint must be a SHA-256 certificate fingerprint: 32 bytes of hex such as 'AB:CD:…' "
            "(see Node > System > Certificates in the PVE web UI)"
        )
    upper = digits.upper()
    return ":".join(upper[i : i + 2] for i in range(0, 64, 2))


class UsageSettings(BaseModel):
    """Usage sampling and alerts (``AUTOVIBE_USAGE__MAX_GAP_S=600``; ``[usage]`` in the config file)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Samples further apart than this are a gap: rates are not interpolated across it.
    max_gap_s: float = Field(default=300.0, ge=10, le=86400)
    # Raw samples are kept this long (sparklines, idle detection); usage itself is kept hourly.
    raw_retention_h: float = Field(default=48.0, ge=1, le=24 * 90)
    # Storage sizes need one content listing per storage, so they are measured less often.
    storage_every_s: float = Field(default=3600.0, ge=60, le=7 * 86400)
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None

    @model_validator(mode="after")
    def _webhook_needs_secret(self) -> UsageSettings:
        if self.webhook_url is not None:
            if not self.webhook_url.startswith(("https://", "http://")):
                raise ValueError("usage.webhook_url must be an http(s) URL")
            if self.webhook_secret is None:
                raise ValueError("usage.webhook_url needs usage.webhook_secret to sign its alerts")
        return self


class NetworkSettings(BaseModel):
    """Network isolation (``[network]`` in the config file; ``AUTOVIBE_NETWORK__HOSTS='{...}'``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Profiles by name: a seed's name (api_access, management_access) changes only the fields given.
    profiles: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # Symbolic hosts used in allowlists as @name: {"hub": ["10.0.0.10"], "db": ["10.0.0.20"]}.
    hosts: dict[str, list[str]] = Field(default_factory=dict)
    # Fixed DNS answers, like /etc/hosts for profile host names; other names use the system resolver.
    static_hosts: dict[str, list[str]] = Field(default_factory=dict)
    resolve_timeout_s: float = Field(default=5.0, gt=0, le=60)


class SecuritySettings(BaseModel):
    """The gate's thresholds (``[security]``; ``AUTOVIBE_SECURITY__APPROVE_AT=40``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    approve_at: int = Field(default=50, ge=1, le=100)  # from this risk score an action needs an approval
    deny_at: int = Field(default=90, ge=1, le=101)  # from this score it is refused (101: never)
    two_person: bool = True  # an approval must come from another identity than the requester
    # Key the audit chain with HMAC-SHA256 (a 32-byte key file, created 0600): without the key, someone
    # with write access to the database cannot rewrite the chain consistently. Set it before the first
    # entry: a log written without a key does not verify with one.
    audit_key_file: Path | None = None

    @model_validator(mode="after")
    def _ordered(self) -> SecuritySettings:
        if self.deny_at < self.approve_at:
            raise ValueError("security.deny_at must not be below security.approve_at")
        return self


class AISettings(BaseModel):
    """The assistant (``[ai]``; ``AUTOVIBE_AI__ANTHROPIC_API_KEY``...)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    planner: Literal["offline", "anthropic", "openai"] = "offline"
    anthropic_api_key: SecretStr | None = None
    anthropic_model: str = "claude-sonnet-4-5"
    anthropic_base_url: str | None = None
    openai_base_url: str | None = None  # Ollama, vLLM, llama.cpp server: http://127.0.0.1:11434/v1
    openai_api_key: SecretStr | None = None
    openai_model: str = "llama3.1"
    redact: bool | None = None  # None: on for hosted models (anthropic), off for local ones
    auto_checkpoint: bool = True  # checkpoint machines before an AI-initiated destructive step


class HubSettings(BaseModel):
    """The hub service (``autovibe serve``): where it listens, its loops, and what it allows callers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    ssl_certfile: Path | None = None  # serve HTTPS with this certificate (PEM) and ssl_keyfile
    ssl_keyfile: Path | None = None
    workers: int = Field(default=4, ge=1, le=64)  # jobs one replica runs at a time
    tick_interval_s: float = Field(default=60.0, gt=0, le=86400)  # the leader's scheduler pass
    leader_poll_s: float = Field(default=2.0, gt=0, le=300)  # followers try to take the lead this often
    heartbeat_s: float = Field(default=5.0, gt=0, le=300)
    replica_timeout_s: float = Field(default=30.0, gt=0, le=3600)  # silent this long = dead
    job_poll_s: float = Field(default=0.5, gt=0, le=60)  # how often idle workers look for queued jobs
    events_poll_s: float = Field(default=0.25, gt=0, le=10)  # how often an event stream looks for news
    rate_per_s: float = Field(default=50.0, gt=0, le=100_000)  # token bucket per API token (or client)
    rate_burst: int = Field(default=100, ge=1, le=1_000_000)
    breaker_failures: int = Field(default=5, ge=1, le=1000)  # PVE failures in a row that open the breaker
    breaker_reset_s: float = Field(default=10.0, gt=0, le=3600)  # open this long, then one trial call
    # Callers listing machines share one /cluster/resources answer this young (PVE's own view of it is
    # refreshed every 10 s by pvestatd); a write through the hub drops it at once. 0 turns sharing off.
    pve_resources_ttl_s: float = Field(default=1.0, ge=0, le=60)

    @model_validator(mode="after")
    def _tls_pair(self) -> HubSettings:
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("hub.ssl_certfile and hub.ssl_keyfile go together: set both or neither")
        return self


class Settings(BaseSettings):
    """Everything autovibe needs to reach PVE and store its own data.

    Build with :func:`load_settings` (file + env + flags) or ``Settings(**values)`` in tests
    (env + values, no file). Instances are frozen; secrets are ``SecretStr`` and never shown in reprs.
    """

    model_config = SettingsConfigDict(
        env_prefix="AUTOVIBE_",
        env_nested_delimiter="__",
        env_ignore_empty=True,
        case_sensitive=False,
        extra="forbid",
        frozen=True,
        # A refused token or password must not be echoed back in the error text.
        hide_input_in_errors=True,
    )

    pve_url: str | None = None
    pve_token: SecretStr | None = None
    pve_user: str | None = None
    pve_password: SecretStr | None = None
    # There is no way to turn verification off: false is accepted only with a fingerprint or a
    # ca_bundle, and either one replaces the system CA store anyway (see composition.py).
    verify_tls: bool = True
    ca_bundle: Path | None = None
    fingerprint: str | None = None
    timeouts: Timeouts = Field(default_factory=Timeouts)
    node_concurrency: int = Field(default=8, ge=1, le=64)
    data_dir: Path = Field(default_factory=default_data_dir)
    # Follows data_dir unless set on its own (default_factory sees the fields validated above it).
    sim_state_path: Path = Field(default_factory=lambda data: Path(data["data_dir"]) / "sim-state.json")
    sim_speed: float = Field(default=20.0, gt=0, le=10_000)
    log_level: Literal["debug", "info", "warning", "error"] = "warning"
    # The store: SQLite under data_dir unless a URL is given (postgresql+psycopg://... to scale out).
    database_url: SecretStr | None = None
    # User profiles: override fields of the seeds (claude_code, hub) or add new ones, by name.
    profiles: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # In-flight PVE tasks autovibe allows itself per node (PVE's own worker limit is 4) and per template.
    tasks_per_node: int = Field(default=4, ge=1, le=64)
    tasks_per_template: int = Field(default=14, ge=1, le=256)
    usage: UsageSettings = Field(default_factory=UsageSettings)
    network: NetworkSettings = Field(default_factory=NetworkSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    ai: AISettings = Field(default_factory=AISettings)
    # An autovibe API token (avt_...): act as its user instead of the local admin.
    token: SecretStr | None = None
    # The key API token hashes are keyed with; default under the XDG config dir. The CLI that creates
    # tokens and the hub that checks them must share it (a mounted secret on a hub).
    token_key_file: Path | None = None
    hub: HubSettings = Field(default_factory=HubSettings)
    # A remote hub for the CLI (https://hub.example:8080): commands go to its API instead of PVE.
    hub_url: str | None = None
    hub_ca_bundle: Path | None = None  # trust the hub's certificate through this PEM CA

    @property
    def store_url(self) -> str:
        """The database to use; the URL may hold a password, so it is kept as a secret."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite:///{self.data_dir / 'autovibe.db'}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        file_settings = InitSettingsSource(settings_cls, init_kwargs=dict(_FILE_VALUES.get() or {}))
        return (init_settings, env_settings, file_settings)

    @property
    def is_simulated(self) -> bool:
        """True when no ``pve_url`` is set: commands run against the embedded simulator."""
        return self.pve_url is None

    @field_validator("pve_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return _normalize_pve_url(value)

    @field_validator("hub_url")
    @classmethod
    def _check_hub_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError(f"hub_url must be a URL such as https://hub.example.com:8080, not {value!r}")
        if parts.username or parts.password:
            raise ValueError("hub_url must not contain credentials; use AUTOVIBE_TOKEN")
        if parts.scheme == "http" and not _is_loopback(parts.hostname):
            raise ValueError(
                "hub_url uses http:// to a remote host, which would send your token in clear text; "
                "use https:// (plain http is allowed only for loopback)"
            )
        return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"

    @field_validator("pve_token")
    @classmethod
    def _check_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        match = _TOKEN_RE.fullmatch(value.get_secret_value().strip())
        if match is None:
            raise ValueError(
                "pve_token must look like USER@REALM!TOKENNAME=SECRET, e.g. 'automation@pve!autovibe=<uuid>' "
                "(create one under Datacenter > Permissions > API Tokens)"
            )
        if _is_placeholder(match["secret"]):
            raise ValueError("pve_token has a placeholder secret; paste the token's real secret (a UUID)")
        return SecretStr(match.group(0))

    @field_validator("pve_user")
    @classmethod
    def _check_user(cls, value: str | None) -> str | None:
        if value is not None and not _USERID_RE.fullmatch(value):
            raise ValueError("pve_user must be USER@REALM, e.g. 'root@pam' or 'automation@pve'")
        return value

    @field_validator("pve_password")
    @classmethod
    def _check_password(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and _is_placeholder(value.get_secret_value()):
            raise ValueError(
                "pve_password is a placeholder; set the real password (or use pve_token instead)"
            )
        return value

    @field_validator("fingerprint")
    @classmethod
    def _check_fingerprint(cls, value: str | None) -> str | None:
        return None if value is None else normalize_fingerprint(value)

    @field_validator("ca_bundle", "data_dir", "sim_state_path", mode="before")
    @classmethod
    def _expand_user(cls, value: Any) -> Any:
        return Path(value).expanduser() if isinstance(value, str | Path) else value

    @field_validator("ca_bundle")
    @classmethod
    def _check_ca_bundle(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(
                f"ca_bundle {value} is not a readable file (on a PVE node: /etc/pve/pve-root-ca.pem)"
            )
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_level(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check_combination(self) -> Settings:
        if not self.verify_tls and self.fingerprint is None and self.ca_bundle is None:
            raise ValueError(
                "verify_tls=false would accept any certificate, including an attacker's; keep it on and "
                "trust PVE's self-signed certificate instead: set fingerprint (the node certificate's "
                "SHA-256, shown under Node > System > Certificates) or ca_bundle (/etc/pve/pve-root-ca.pem)"
            )
        if self.fingerprint is not None and self.ca_bundle is not None:
            raise ValueError("set fingerprint or ca_bundle, not both: each alone says how to trust the host")
        has_password = self.pve_user is not None or self.pve_password is not None
        if self.pve_token is not None and has_password:
            raise ValueError("set either pve_token or pve_user + pve_password, not both")
        if has_password and (self.pve_user is None or self.pve_password is None):
            raise ValueError("pve_user and pve_password go together; set both (or use pve_token)")
        if self.pve_url is not None and self.pve_token is None and not has_password:
            raise ValueError(
                f"pve_url is {self.pve_url} but no credentials are set: set pve_token "
                "(AUTOVIBE_PVE_TOKEN) or pve_user + pve_password"
            )
        return self


def _normalize_pve_url(value: str) -> str:
    """Return ``scheme://host[:port]``; refuse plain HTTP to remote hosts and credentials in the URL."""
    parts = urlsplit(value.strip())
    host = parts.hostname
    if parts.scheme not in ("https", "http") or not host:
        raise ValueError(
            f"pve_url must be an https:// URL such as https://pve1.example.com:8006, not {value!r}"
        )
    if parts.username or parts.password:
        raise ValueError("pve_url must not contain credentials; use pve_token or pve_user + pve_password")
    if parts.scheme == "http" and not _is_loopback(host):
        raise ValueError(
            "pve_url uses http:// to a remote host, which would send the API token in clear text; "
            "use https:// (PVE listens on https://HOST:8006); plain http is allowed only for loopback"
        )
    path = parts.path.rstrip("/")
    # People paste the API root from docs; the client adds /api2/json itself.
    if path in ("", "/api2/json"):
        return f"{parts.scheme}://{parts.netloc}"
    raise ValueError(f"pve_url must not have a path ({parts.path!r}); use https://HOST:8006")


def _read_config_file(path: Path, *, explicit: bool) -> dict[str, Any]:
    if not path.exists():
        if explicit:
            raise SettingsInvalid(
                f"config file {path} does not exist", hint="check --config / AUTOVIBE_CONFIG"
            )
        return {}
    try:
        with path.open("rb") as handle:
            values = tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SettingsInvalid(f"cannot read config file {path}: {exc}") from exc
    unknown = sorted(set(values) - set(Settings.model_fields))
    if unknown:
        close = get_close_matches(unknown[0], list(Settings.model_fields), n=1)
        hint = (
            f"did you mean {close[0]!r}?" if close else f"known settings: {', '.join(Settings.model_fields)}"
        )
        raise SettingsInvalid(f"unknown setting {unknown[0]!r} in {path}", hint=hint)
    if ("pve_token" in values or "pve_password" in values) and _readable_by_others(path):
        raise SettingsInvalid(
            f"config file {path} holds a secret but other users can read it",
            hint=f"run: chmod 600 {path}",
        )
    return values


def _readable_by_others(path: Path) -> bool:
    if os.name != "posix":
        return False
    return bool(path.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH | stat.S_IWGRP | stat.S_IWOTH))


def load_settings(
    *,
    config_path: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build the settings from flags (``overrides``, ``None`` values ignored), env, the TOML file, defaults.

    ``config_path`` (the ``--config`` flag) wins over ``AUTOVIBE_CONFIG``, which wins over
    :func:`default_config_path`. A missing default file is fine; a
    missing explicit one is an error. Raises :class:`SettingsInvalid` with the offending setting
    named and never its value, so secrets cannot leak into messages.
    """
    env = os.environ
    explicit = config_path is not None or bool(env.get(CONFIG_ENV))
    path = config_path or (
        Path(env[CONFIG_ENV]).expanduser() if env.get(CONFIG_ENV) else default_config_path()
    )
    file_values = _read_config_file(path, explicit=explicit)
    flags = {key: value for key, value in (overrides or {}).items() if value is not None}
    token = _FILE_VALUES.set(file_values)
    try:
        return Settings(**flags)
    except ValidationError as exc:
        raise _invalid(exc, path) from None
    finally:
        _FILE_VALUES.reset(token)


def _invalid(exc: ValidationError, path: Path) -> SettingsInvalid:
    first = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(part) for part in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    text = f"invalid setting {where}: {message}" if where else f"invalid settings: {message}"
    return SettingsInvalid(
        text, hint=f"settings come from flags, AUTOVIBE_* environment variables and {path}"
    )
