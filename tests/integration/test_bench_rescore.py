"""`fedcredit bench rescore` at a small size, through real processes: both reviews ask the feature
nodes for their data alerts (split by the nodes' `max_ids_per_request`, as scoring is), the warm
review makes no pseudonym, and `within_budget` is about the whole review, data alerts included."""

from __future__ import annotations

import math

from fedcredit.bench.rescore import BUDGET_SECONDS, SHIFT, run_rescore_benchmark

ACCOUNTS, CAP, ENTERPRISES = 1500, 400, 1200


def test_the_benchmark_reviews_with_data_alerts_split_by_the_nodes_cap() -> None:
    result = run_rescore_benchmark(ACCOUNTS, enterprises=ENTERPRISES, seed=5,
                                   max_ids_per_request=CAP)

    # every data-alert request within the nodes' cap, together the whole portfolio
    assert result["max_ids_per_request"] == CAP
    assert result["review_warm_data_alert_requests"] == [CAP] * (ACCOUNTS // CAP) + [
        ACCOUNTS % CAP]
    # the warm review reads every pseudonym from the cache; the first made each once
    assert result["review_pseudonyms_made"] == ACCOUNTS
    assert result["review_warm_pseudonyms_made"] == 0
    # data alerts timed inside the review they belong to
    for review in ("review", "review_warm"):
        assert 0 < result[f"{review}_data_alerts_seconds"] < result[f"{review}_seconds"]
        assert result[f"{review}_data_alerts_cpu_seconds"] >= 0
        assert result[f"{review}_scoring_seconds"] < result[f"{review}_seconds"]
    # the shifted data is found: about SHIFT of the chain's SMEs deteriorated, none unknown
    levels = result["data_alert_levels"]
    assert sum(levels.values()) + result["data_alerts_refused"] == ACCOUNTS
    raised = levels["yellow"] + levels["orange"] + levels["red"]
    assert 0.5 * SHIFT * ENTERPRISES < raised < min(2 * SHIFT * ENTERPRISES,
                                                    result["known_ids"])
    assert result["warm_alert_sources"]["data"] + result["warm_alert_sources"]["both"] > 0
    assert set(result["feature_shift"]["nodes_reloaded"].values()) == {"loaded"}
    # the budget is the whole warm review, data alerts included; the old keys are kept
    assert result["within_budget_includes_data_alerts"] is True
    assert result["within_budget"] is (result["review_warm_seconds"] <= BUDGET_SECONDS)
    assert result["scored"] + result["unscored"] == ACCOUNTS
    assert result["known_ids"] < ACCOUNTS and result["unscored"] >= ACCOUNTS - result["known_ids"]
    assert math.isfinite(result["warm_scoring_ratio"]) and result["plaintext_scoring_seconds"] > 0
    for key in ("book_seconds", "review_cpu_seconds", "review_warm_cpu_seconds", "cores",
                "alerts", "score_psi", "review_warm_scoring_seconds", "budget_seconds"):
        assert key in result
