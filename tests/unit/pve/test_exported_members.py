"""``autovibe.pve.__all__`` is sorted and complete (like httpx's tests/test_exported_members.py)."""

from __future__ import annotations

import inspect
import types
import typing

import autovibe.pve
from autovibe.pve import errors as pve_errors


def _ruff_order(name: str) -> tuple[int, str]:
    # The order ruff's RUF022 keeps: CONSTANTS, then Classes, then functions.
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


def test_all_is_sorted_without_duplicates():
    assert autovibe.pve.__all__ == sorted(set(autovibe.pve.__all__), key=_ruff_order)


def test_all_names_exactly_the_public_namespace():
    public = {
        name
        for name, value in vars(autovibe.pve).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }

    assert set(autovibe.pve.__all__) == public


def test_every_error_class_is_exported():
    defined = {
        name
        for name, value in vars(pve_errors).items()
        if inspect.isclass(value) and issubclass(value, pve_errors.PveError)
    }

    assert defined <= set(autovibe.pve.__all__)


def _pve_classes(annotation: object) -> set[str]:
    found: set[str] = set()
    module = getattr(annotation, "__module__", "")
    if inspect.isclass(annotation) and module.startswith("autovibe.pve"):
        found.add(annotation.__name__)
    for argument in typing.get_args(annotation):
        found |= _pve_classes(argument)
    return found


def test_every_type_in_the_client_signatures_is_exported():
    needed: set[str] = set()
    for name, member in inspect.getmembers(autovibe.pve.PveClient, inspect.isfunction):
        if name.startswith("_") and name != "__init__":
            continue
        for annotation in typing.get_type_hints(member).values():
            needed |= _pve_classes(annotation)

    assert needed  # the check inspects something
    assert needed <= set(autovibe.pve.__all__)
