"""Horizontal logistic regression across banks on Flower (FedAvg, SecAgg+, optional central DP)."""
