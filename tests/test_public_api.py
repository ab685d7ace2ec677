"""Each package exports a sorted __all__ whose names all exist."""

from __future__ import annotations

import importlib

import pytest


def isort_style(name: str) -> tuple[int, str]:
    """Constants, then classes, then functions, each alphabetically (ruff's RUF022 order)."""
    if name.isupper():
        return (0, name)
    return (1, name) if name[:1].isupper() else (2, name)


@pytest.mark.parametrize("package", ["proj", "agents", "coordinator"])
def test_package_exports_sorted_existing_names(package: str) -> None:
    module = importlib.import_module(package)
    assert module.__all__ == sorted(module.__all__, key=isort_style)
    assert len(set(module.__all__)) == len(module.__all__)
    assert all(hasattr(module, name) for name in module.__all__)


def test_readme_example_names_are_importable() -> None:
    from agents import agent  # noqa: F401
    from coordinator import Step, Workflow, get_run, load_workflow, start  # noqa: F401
