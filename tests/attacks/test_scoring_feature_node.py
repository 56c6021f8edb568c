"""A feature node holding every pseudonym it was asked about cannot name an enterprise it does
not hold among those the bank queried (DESIGN §0, §4.5, §5), through real processes.

The bank scores a batch mixing the node's customers, other nodes' customers and enterprises
nobody holds. The curious node ("logistics") then takes the pseudonyms its budget book kept, a
candidate list of public USCCs (every id of every party plus registry-shaped ids, so every
queried enterprise is on it), and every function it can evaluate with what its state directory
holds (`scoring_attacks.name_queried`), and names the candidates that match.
"""

from __future__ import annotations

import numpy as np

from common.uscc import generate_uscc
from tests.attacks.scoring_attacks import name_queried, own_named
from tests.attacks.scoring_network import Scoring

CURIOUS = "logistics"


def test_a_feature_node_cannot_name_the_non_customers_the_bank_asked_about(
        scoring_net: Scoring) -> None:
    holders = scoring_net.holders()
    everyone = sorted(set().union(*holders.values()))
    nobody = [i for i in generate_uscc(np.random.default_rng(5), 400) if i not in everyone]
    own = sorted(holders[CURIOUS])[:30]
    others = [i for i in everyone if i not in holders[CURIOUS]][:60]
    queried = own + others + nobody[:30]
    scorer = scoring_net.scorer()
    try:
        scorer.setup()  # an honest set-up (an earlier attack may have left another)
        scorer.score(queried, consent="fn-attack")
    finally:
        scorer.close()

    candidates = everyone + nobody
    named = name_queried(scoring_net.state(CURIOUS), "bank", candidates)
    non_customers = set(queried) - holders[CURIOUS]
    found = named & non_customers
    print(f"{CURIOUS} named {len(found)} of the {len(non_customers)} non-customers queried "
          f"(and {len(named & holders[CURIOUS])} of its own customers)")
    assert not found
    assert not named - set(queried)  # nothing it names is a false match either
    # the control: what it may know, its own customers that were asked about, it does find
    mine = own_named(scoring_net.state(CURIOUS), "bank", list(scoring_net.tables[CURIOUS].ids))
    assert set(own) <= mine
