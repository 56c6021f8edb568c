"""Coordinator: node registry, job runner, relay, store."""
