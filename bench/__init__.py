"""Benchmarks (`make bench`): bench/run.py orchestrates; the baseline views live here too."""
