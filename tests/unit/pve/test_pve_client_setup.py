"""PveClient construction refuses what it cannot use, before any I/O."""

from __future__ import annotations

import pytest

from autovibe.pve import PveClient, TokenAuth

AUTH = TokenAuth("root@pam!ci=secret-value")


@pytest.mark.parametrize("url", ["pve1:8006", "ftp://pve1", "https://", "https://[::1"])
def test_base_url_must_be_http_or_https_with_a_host(url):
    with pytest.raises(ValueError, match="base_url"):
        PveClient(url, auth=AUTH)


def test_node_concurrency_must_be_positive():
    with pytest.raises(ValueError, match="node_concurrency"):
        PveClient("https://pve1:8006", auth=AUTH, node_concurrency=0)


@pytest.mark.parametrize("url", ["https://pve1:8006", "https://pve1:8006/", "https://pve1:8006/api2/json/"])
def test_api_prefix_is_added_once(url):
    assert repr(PveClient(url, auth=AUTH)).startswith("PveClient('https://pve1:8006/api2/json',")


async def test_paths_must_be_absolute():
    async with PveClient("https://pve1:8006", auth=AUTH) as pve:
        with pytest.raises(ValueError, match="start with '/'"):
            await pve.get("nodes")
