"""Service endpoints: liveness, readiness, and the route listing."""
