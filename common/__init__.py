"""Pieces shared by node, coordinator and CLI: errors, logging, TLS channels, audit log."""
