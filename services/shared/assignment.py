"""Experiment assignment. Its one definition lives in the SDK (`agent_variants.assignment`),
so the service and every client compute the same arm; re-exported here for the service."""

from agent_variants.assignment import BUCKETS, arm_sizes, assign, bounds, bucket, rollout_arm

__all__ = ["BUCKETS", "arm_sizes", "assign", "bounds", "bucket", "rollout_arm"]
