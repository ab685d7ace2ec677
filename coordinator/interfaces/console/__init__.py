"""The web console at ``/ui``: an approvals inbox, runs, and a run's live page."""

from coordinator.interfaces.console.pages import mount_console

__all__ = ["mount_console"]
