"""Batch pipeline (stub: being written)."""


class Pipeline:
    pass
