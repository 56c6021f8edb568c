"""The bank's decision service: HTTP API, request checks, stored decisions."""
