"""The layer sweep: one extraction pass, one run per layer (``sweep``), and ``sweep-compare``."""
