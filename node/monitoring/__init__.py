"""Early warning at a feature node: its own limits, reference snapshots, encrypted levels."""
