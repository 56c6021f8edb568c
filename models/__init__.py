"""Federated algorithms, one folder per algorithm, one file per role."""
