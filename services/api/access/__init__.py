"""Access control: which scope each route needs, verified keys in memory, rate limits,
and the ASGI gate that applies them before anything else runs."""
