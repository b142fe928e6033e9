"""Verifiable writing tasks built by code, with rule-based judges (learning-signal checks)."""
