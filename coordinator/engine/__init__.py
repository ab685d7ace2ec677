"""The engine: specs and plans, dispatch, the coordinator's Celery tasks, approvals, the watchdog,
operator actions. It never imports the interfaces or observation (import-linter checks it)."""
