"""Profiles: the two seeds, config overrides merged field by field, and clear refusals."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest
from pydantic import ValidationError

from autovibe.errors import AutovibeInvalid, AutovibeNotFound
from autovibe.machines.errors import ProfileInvalid, ProfileNotFound
from autovibe.machines.profiles import SEED_PROFILES, Profile, get_profile, load_profiles


def test_the_seeds_are_exactly_as_designed() -> None:
    sizes = {
        name: (p.template_vmid, p.cores, p.memory_mib, p.disk_gib, p.network_profile, p.full_clone, p.storage)
        for name, p in SEED_PROFILES.items()
    }
    assert sizes == {
        "claude_code": (9000, 2, 4096, 20, "api_access", True, None),
        "hub": (9001, 4, 8192, 50, "management_access", True, None),
    }


def test_no_overrides_gives_the_seeds_in_a_fresh_dict() -> None:
    profiles = load_profiles({})
    assert profiles == dict(SEED_PROFILES)
    profiles.pop("hub")
    assert "hub" in SEED_PROFILES


def test_a_config_file_changes_one_field_of_a_seed_and_adds_a_profile() -> None:
    config = tomllib.loads(
        """
        [profiles.claude_code]
        memory_mib = "8G"
        tags = ["agent", "gpu+cuda"]

        [profiles.ci_runner]
        template_vmid = 9010
        cores = 4
        memory_mib = 8192
        disk_gib = "40G"
        network_profile = "api_access"
        storage = "local-zfs"
        checkpoint_before_expiry = true
        """
    )
    profiles = load_profiles(config["profiles"])
    claude = profiles["claude_code"]
    assert (claude.memory_mib, claude.tags) == (8192, ("agent", "gpu+cuda"))
    assert claude.model_dump(exclude={"memory_mib", "tags"}) == SEED_PROFILES["claude_code"].model_dump(
        exclude={"memory_mib", "tags"}
    )
    assert profiles["ci_runner"] == Profile(
        name="ci_runner",
        template_vmid=9010,
        cores=4,
        memory_mib=8192,
        disk_gib=40,
        network_profile="api_access",
        storage="local-zfs",
        checkpoint_before_expiry=True,
    )
    assert profiles["hub"] == SEED_PROFILES["hub"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"hub": {"cores": 500}}, "profile 'hub': cores: must be at most 128"),
        ({"hub": {"memory_mib": "lots"}}, "profile 'hub': memory_mib: 'lots' is not a size"),
        ({"hub": {"corse": 8}}, "profile 'hub': 'corse' is not a profile field; did you mean 'cores'?"),
        ({"hub": {"name": "other"}}, "profile 'hub': name 'other' differs"),
        ({"hub": {"tags": ["ok", "no spaces"]}}, "profile 'hub': tags: 'no spaces' is not a valid PVE tag"),
        (
            {"hub": {"storage": "local lvm"}},
            "profile 'hub': storage: 'local lvm' is not a valid PVE storage id",
        ),
        ({"hub": {"template_vmid": 99}}, "profile 'hub': template_vmid: must be at least 100"),
        ({"hub": 4}, "profile 'hub': expected a table of fields, not int"),
        ({"ci": {"cores": 2}}, "profile 'ci': template_vmid: is required (and 3 more problems)"),
        ({"CI Runner": {}}, "profile 'CI Runner': name: 'CI Runner' is not a valid name"),
    ],
)
def test_a_bad_override_names_the_profile_and_the_field(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ProfileInvalid) as caught:
        load_profiles(overrides)
    assert isinstance(caught.value, AutovibeInvalid)
    assert isinstance(caught.value, ValueError)
    assert caught.value.message.startswith(message), caught.value.message
    assert "[profiles." in (caught.value.hint or "")


def test_get_profile_finds_a_profile_by_name() -> None:
    assert get_profile(load_profiles({}), "hub") is SEED_PROFILES["hub"]


def test_an_unknown_profile_is_not_found_and_a_key_error_listing_the_known_names() -> None:
    with pytest.raises(KeyError) as caught:
        get_profile(load_profiles({"ci": {**SEED_PROFILES["hub"].model_dump(), "name": "ci"}}), "hbu")
    error = caught.value
    assert isinstance(error, ProfileNotFound)
    assert isinstance(error, AutovibeNotFound)
    assert str(error) == "no profile named 'hbu'"
    assert error.hint is not None
    assert "did you mean 'hub'?" in error.hint
    assert "known profiles: ci, claude_code, hub" in error.hint


def test_profiles_are_immutable() -> None:
    with pytest.raises(ValidationError):
        SEED_PROFILES["hub"].cores = 64  # type: ignore[misc]
