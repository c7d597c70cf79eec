"""What the service does on its own, on a clock: rollout transitions."""
