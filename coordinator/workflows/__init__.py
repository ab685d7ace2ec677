"""Workflows shipped with agentchord, as YAML files (see coordinator.engine.specs.builtin_workflow)."""
