"""The fedcredit command line, demo and benchmarks."""
