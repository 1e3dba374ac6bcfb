"""Serving queued jobs: the worker and its ``worker`` / ``jobs`` commands."""
