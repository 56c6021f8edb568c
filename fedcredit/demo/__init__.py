"""The demo: the whole network on one machine, end to end (a tool: nothing imports it)."""
