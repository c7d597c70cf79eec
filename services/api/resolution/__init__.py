"""Resolution over HTTP: what an agent runs with."""
