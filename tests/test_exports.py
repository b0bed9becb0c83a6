"""The public surface: every exported name resolves to the object in its home module."""

from __future__ import annotations

import importlib

import pytest

import workbench as wb


@pytest.mark.parametrize("name", wb.__all__)
def test_exported_names_resolve(name: str) -> None:
    home = importlib.import_module(wb._EXPORTS[name])
    assert getattr(wb, name) is getattr(home, name)


def test_unknown_name() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = wb.nope


def test_all_lists_every_export() -> None:
    assert sorted(wb.__all__) == sorted(wb._EXPORTS)
