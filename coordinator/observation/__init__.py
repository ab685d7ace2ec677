"""Observation: a run's timings (the coordination tax), Prometheus metrics and reports."""
