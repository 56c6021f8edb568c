"""The demo: the whole network on one machine, end to end (a tool: nothing imports it)."""

from fedcredit.demo.parties import FEATURE_PARTIES, LABEL_PARTY, party_specs
from fedcredit.demo.run import run_demo

__all__ = ["FEATURE_PARTIES", "LABEL_PARTY", "party_specs", "run_demo"]
