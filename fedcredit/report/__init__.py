"""Model reports at the bank: validation figures from joint scores, written as JSON and HTML."""
