"""Joint scoring at a node: the bank's scorer (bank.py), the feature node's handler (feature.py)."""
