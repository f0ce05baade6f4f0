"""Held-out evaluation: metrics and the comparison against baselines (docs/model.md)."""
