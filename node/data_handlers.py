"""Live-data handlers: the node's snapshot status for the coordinator, and an on-demand reload."""

from __future__ import annotations

from node.snapshot import LiveTable
from node.state import NodeState
from proto.fedcredit.v1 import common_pb2, node_pb2


def snapshot_status(live: LiveTable) -> common_pb2.DataSnapshot:
    """The current snapshot's version and load time, and the last refusal (value-free)."""
    current, refusal = live.current(), live.refusal
    return common_pb2.DataSnapshot(
        version=current.version, loaded_at_unix=int(current.loaded_at),
        refused_reason=refusal.reason if refusal is not None else "",
        refused_at_unix=int(refusal.at) if refusal is not None else 0,
        refresh_seconds=live.cfg.refresh_seconds)


def reload_data(request: node_pb2.ReloadDataRequest, state: NodeState) -> node_pb2.ReloadDataReply:
    """Read the source again now (even if its file looks unchanged); report what happened."""
    result = state.live.reload(force=True, why="operator request")
    return node_pb2.ReloadDataReply(outcome=result.outcome, message=result.message,
                                    snapshot=snapshot_status(state.live), party=state.party)
