"""Credentials for PVE: API tokens, and user/password with ticket renewal.

Secrets are held as pydantic ``SecretStr`` and never appear in ``repr``/``str``; only the header
values built for a request contain them, and the client never logs headers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from autovibe.pve.errors import PveAuthError, PveProtocolError

__all__ = [
    "TICKET_LIFETIME",
    "TICKET_RENEW_AFTER",
    "PasswordAuth",
    "PveAuth",
    "Ticket",
    "TicketLogin",
    "TicketSession",
    "TokenAuth",
]

TICKET_LIFETIME = 2 * 3600.0
"""Seconds a PVE ticket is valid (SEMANTICS §2; PVE adds 5 min grace we do not rely on)."""

TICKET_RENEW_AFTER = 105 * 60.0
"""Renew a ticket once it is this old, well before ``TICKET_LIFETIME``."""

TICKET_PATH = "/access/ticket"

_log = structlog.get_logger("autovibe.pve")


class TokenAuth:
    """An API token, given as PVE prints it: ``USER@REALM!TOKENID=SECRET``.

    Sent as ``Authorization: PVEAPIToken=USER@REALM!TOKENID=SECRET``; tokens need no CSRF token.
    """

    __slots__ = ("_secret", "_token_id")

    def __init__(self, token: str | SecretStr) -> None:
        text = token.get_secret_value() if isinstance(token, SecretStr) else token
        # PVE splits at the LAST '=' (SEMANTICS §2): the token id itself never contains one.
        token_id, sep, secret = text.strip().rpartition("=")
        user, bang, name = token_id.partition("!")
        if not sep or not secret or not bang or "@" not in user or not name:
            raise ValueError("an API token looks like 'user@realm!tokenid=secret'")
        self._token_id = token_id
        self._secret = SecretStr(secret)

    @property
    def token_id(self) -> str:
        """The full token id, ``user@realm!tokenid``; not secret."""
        return self._token_id

    def headers(self) -> dict[str, str]:
        """The request headers that carry this token. Contains the secret: never log them."""
        return {"Authorization": f"PVEAPIToken={self._token_id}={self._secret.get_secret_value()}"}

    def __repr__(self) -> str:
        return f"TokenAuth(token_id={self._token_id!r}, secret='**********')"


class PasswordAuth:
    """A PVE user (``root@pam``) and password, exchanged for a 2-hour ticket that the client renews."""

    __slots__ = ("_password", "_username")

    def __init__(self, username: str, password: str | SecretStr) -> None:
        if "@" not in username:
            raise ValueError("a PVE user name includes its realm, like 'root@pam'")
        self._username = username
        self._password = password if isinstance(password, SecretStr) else SecretStr(password)

    @property
    def username(self) -> str:
        return self._username

    @property
    def password(self) -> SecretStr:
        return self._password

    def __repr__(self) -> str:
        return f"PasswordAuth(username={self._username!r}, password='**********')"


PveAuth = TokenAuth | PasswordAuth

TicketLogin = Callable[[Mapping[str, str]], Awaitable[Any]]
"""Posts a form to ``/access/ticket`` without credentials and returns the envelope's ``data``."""


@dataclass(frozen=True, slots=True, repr=False)
class Ticket:
    """A granted ticket and its CSRF token, with the clock time it was issued."""

    ticket: SecretStr
    csrf: SecretStr
    issued_at: float

    def headers(self, method: str) -> dict[str, str]:
        """Cookie on every request, CSRF header on non-GET ones (SEMANTICS §2). Never log them."""
        headers = {"Cookie": f"PVEAuthCookie={self.ticket.get_secret_value()}"}
        if method != "GET":
            headers["CSRFPreventionToken"] = self.csrf.get_secret_value()
        return headers

    def __repr__(self) -> str:
        return f"Ticket(issued_at={self.issued_at!r})"


class _Grant(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    ticket: SecretStr
    csrf: SecretStr = Field(alias="CSRFPreventionToken")


class TicketSession:
    """Holds the current ticket of a ``PasswordAuth``: logs in on first use, renews it once it is
    older than ``TICKET_RENEW_AFTER`` by posting the ticket as password, and logs in afresh when
    a renewal is refused or the ticket is past its lifetime. One lock serialises logins so
    concurrent requests share one ticket.
    """

    def __init__(self, auth: PasswordAuth, *, clock: Callable[[], float]) -> None:
        self._auth = auth
        self._clock = clock
        self._ticket: Ticket | None = None
        self._lock = asyncio.Lock()

    async def current(self, login: TicketLogin) -> Ticket:
        """A ticket fit to send now, logging in or renewing first when needed."""
        async with self._lock:
            ticket = self._ticket
            if ticket is None or self._age(ticket) >= TICKET_LIFETIME:
                return await self._login(login, self._auth.password)
            if self._age(ticket) >= TICKET_RENEW_AFTER:
                try:
                    return await self._login(login, ticket.ticket)
                except PveAuthError:
                    return await self._login(login, self._auth.password)
            return ticket

    async def replace(self, login: TicketLogin, rejected: Ticket) -> Ticket:
        """Log in again with the password after PVE refused ``rejected`` with a 401.

        If another request already replaced that ticket, its replacement is returned instead of
        logging in twice.
        """
        async with self._lock:
            if self._ticket is not None and self._ticket is not rejected:
                return self._ticket
            return await self._login(login, self._auth.password)

    def _age(self, ticket: Ticket) -> float:
        return self._clock() - ticket.issued_at

    async def _login(self, login: TicketLogin, password: SecretStr) -> Ticket:
        renewal = password is not self._auth.password
        _log.info("pve.login", username=self._auth.username, renewal=renewal)
        data = await login({"username": self._auth.username, "password": password.get_secret_value()})
        try:
            grant = _Grant.model_validate(data)
        except ValidationError:
            raise PveProtocolError(
                "login answer lacks ticket or CSRFPreventionToken", method="POST", path=TICKET_PATH
            ) from None
        self._ticket = Ticket(ticket=grant.ticket, csrf=grant.csrf, issued_at=self._clock())
        return self._ticket

    def __repr__(self) -> str:
        return f"TicketSession(username={self._auth.username!r})"
