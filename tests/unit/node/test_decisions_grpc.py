"""The decision service's gRPC request becomes the HTTP API's request model, bad fields named."""

from __future__ import annotations

import pytest

from common.errors import DataValidationError
from node.decisions.grpc_api import _request
from proto.fedcredit.v1 import decisions_pb2


def test_features_and_missing_ones_become_values_and_nulls() -> None:
    request = _request(decisions_pb2.DecideRequest(
        enterprise_id="91110108MA01ABCD2X", consent_reference="LOAN-1",
        consent_expires_at="2026-12-31T23:59:59+08:00", features={"utilisation": 0.4},
        missing_features=["loan_count"]))
    assert request.features == {"utilisation": 0.4, "loan_count": None}
    assert request.purpose == "credit assessment"
    assert request.consent.reference == "LOAN-1"
    bare = _request(decisions_pb2.DecideRequest(
        enterprise_id="E1", consent_reference="LOAN-1", purpose="review",
        consent_expires_at="2026-12-31T23:59:59Z"))
    assert bare.features is None and bare.purpose == "review"


@pytest.mark.parametrize(("field", "change"), [
    ("consent.expires_at", {"consent_expires_at": "tomorrow"}),
    ("consent.reference", {"consent_reference": ""}),
    ("enterprise_id", {"enterprise_id": ""})])
def test_a_bad_field_is_named(field: str, change: dict[str, str]) -> None:
    body = {"enterprise_id": "E1", "consent_reference": "LOAN-1",
            "consent_expires_at": "2026-12-31T23:59:59Z", **change}
    with pytest.raises(DataValidationError, match=field.replace(".", r"\.")):
        _request(decisions_pb2.DecideRequest(**body))
