"""Degradation models (stub: being written)."""
