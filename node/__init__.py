"""Data-holder node: gRPC NodeService next to the holder's own table."""
