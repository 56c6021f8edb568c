"""Horizontal training across banks on Flower, run on this machine (a tool: nothing imports it)."""
