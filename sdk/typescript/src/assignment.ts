/**
 * Experiment and rollout assignment: which arm a subject gets, exactly as the contract
 * defines it (the Python SDK's `agent_variants.assignment`):
 *
 *     bucket = first 8 bytes of sha256(`${salt}:${subject}`), big-endian, mod 10000
 *
 * Arms own consecutive bucket ranges in arm order (largest-remainder apportionment of the
 * 10,000 buckets by weight, ties to the lower arm). A rollout at percent p: arm 0 owns
 * [0, 10000 - 100p), arm 1 the rest, so a subject moved to arm 1 never goes back.
 */

import { createHash } from "node:crypto";

export const BUCKETS = 10_000;

/** The subject's bucket, 0-9999. */
export function bucket(salt: string, subject: string): number {
  const digest = createHash("sha256").update(`${salt}:${subject}`, "utf8").digest();
  return Number(digest.readBigUInt64BE(0) % 10_000n);
}

/** How many of the 10,000 buckets each arm owns (largest-remainder apportionment). */
export function armSizes(weights: readonly number[]): number[] {
  const total = weights.reduce((a, b) => a + b, 0);
  if (!weights.length || total <= 0 || weights.some((w) => w < 0 || !Number.isInteger(w))) {
    throw new RangeError("weights must be non-negative integers with a positive sum");
  }
  const sizes = weights.map((w) => Math.floor((w * BUCKETS) / total));
  const left = BUCKETS - sizes.reduce((a, b) => a + b, 0);
  const byRemainder = weights
    .map((_, i) => i)
    .sort((i, j) => (weights[j]! * BUCKETS) % total - (weights[i]! * BUCKETS) % total || i - j);
  for (const i of byRemainder.slice(0, left)) sizes[i]! += 1;
  return sizes;
}

const boundsCache = new Map<string, number[]>();

/** The exclusive upper bucket of each arm: arm i owns [bounds[i-1], bounds[i]). */
export function bounds(weights: readonly number[]): number[] {
  const key = weights.join(",");
  let found = boundsCache.get(key);
  if (found === undefined) {
    let upper = 0;
    found = armSizes(weights).map((size) => (upper += size));
    if (boundsCache.size >= 1024) boundsCache.clear();
    boundsCache.set(key, found);
  }
  return found;
}

/** The arm index (0-based, 0 is the control) the subject is assigned to. */
export function assign(salt: string, subject: string, weights: readonly number[]): number {
  const upper = bounds(weights);
  const b = bucket(salt, subject);
  let arm = 0;
  while (arm < upper.length && upper[arm]! <= b) arm++;
  return arm;
}

/** The arm (0: what the environment served, 1: the variant rolled out) at `percent` (0-100). */
export function rolloutArm(salt: string, subject: string, percent: number): number {
  if (!Number.isInteger(percent) || percent < 0 || percent > 100) {
    throw new RangeError(`a rollout's percent is an integer from 0 to 100, not ${percent}`);
  }
  return bucket(salt, subject) < BUCKETS - 100 * percent ? 0 : 1;
}
