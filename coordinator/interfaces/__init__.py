"""The interfaces: the Python API (start, Run), the HTTP API, the CLI, the local stack and the demo."""
