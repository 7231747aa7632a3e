"""Credentials: token parsing and keeping secrets out of repr/str."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from autovibe.pve import PasswordAuth, PveClient, TokenAuth

SECRET = "0b4f0d3c-7d6e-4a9b-9a43-5f1c2d3e4f50"


def test_token_splits_at_the_last_equals_sign():
    auth = TokenAuth(f"root@pam!ci={SECRET}")

    assert auth.token_id == "root@pam!ci"
    assert auth.headers() == {"Authorization": f"PVEAPIToken=root@pam!ci={SECRET}"}


def test_token_accepts_a_secret_str():
    assert TokenAuth(SecretStr(f"ci@pve!deploy={SECRET}")).token_id == "ci@pve!deploy"


@pytest.mark.parametrize(
    "bad", ["root@pam!ci", "root@pam!ci=", "root@pam=secret", "root!ci=secret", "root@pam!=s"]
)
def test_malformed_tokens_are_refused_without_echoing_them(bad):
    with pytest.raises(ValueError) as caught:
        TokenAuth(bad)

    assert "secret" not in str(caught.value).replace("'user@realm!tokenid=secret'", "")


def test_password_auth_needs_a_realm():
    with pytest.raises(ValueError, match="realm"):
        PasswordAuth("root", "pw")


def test_secrets_stay_out_of_repr_and_str():
    token = TokenAuth(f"root@pam!ci={SECRET}")
    password = PasswordAuth("root@pam", "hunter2-secret")
    client = PveClient("https://pve1:8006", auth=password)

    for text in (repr(token), str(token), repr(password), str(password), repr(client)):
        assert SECRET not in text
        assert "hunter2" not in text
    assert "root@pam!ci" in repr(token)
    assert "root@pam" in repr(password)
