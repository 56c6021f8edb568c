"""Benchmarks: encrypted protocols against their plaintext twins and local baselines."""
