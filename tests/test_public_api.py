"""Each package exports a sorted __all__ whose names all exist."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize("package", ["proj", "agents", "coordinator"])
def test_package_exports_sorted_existing_names(package: str) -> None:
    module = importlib.import_module(package)
    assert module.__all__ == sorted(module.__all__)
    assert all(hasattr(module, name) for name in module.__all__)


def test_readme_example_names_are_importable() -> None:
    from agents import agent  # noqa: F401
    from coordinator import Step, Workflow, get_run, load_workflow, start  # noqa: F401
