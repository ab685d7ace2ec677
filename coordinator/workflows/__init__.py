"""Workflows shipped with agentchord, as YAML files (see coordinator.specs.builtin_workflow)."""
