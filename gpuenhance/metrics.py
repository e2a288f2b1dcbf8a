"""Image quality metrics (stub: being written)."""
