"""Held-out evaluation: metrics and the comparison against baselines (DESIGN §6)."""
