"""Code shared by the service and by agents that resolve their config in-process.

Nothing here imports FastAPI or the service's settings; the database driver is imported
only where a function needs it, so the dataclasses stay importable without the server's
dependencies.
"""
