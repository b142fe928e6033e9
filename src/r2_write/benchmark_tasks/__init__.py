"""Benchmark tasks: verifiable writing tasks built by code, with rule-based judges (benchmarks/learning_signal.py, benchmarks/reflection_claims.py)."""
