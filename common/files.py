"""Files written whole or not at all, and role state as `.npz` with a schema version."""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import DataValidationError

STATE_SCHEMA = 1
_META = "__meta__"


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write to a private temporary file beside `path`, fsync, then rename over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # created 0600
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def state_bytes(state: dict[str, Any]) -> bytes:
    """A role's state dict as `.npz`: arrays as entries, everything else as one JSON entry."""
    arrays = {k: v for k, v in state.items() if isinstance(v, np.ndarray)}
    meta = {k: v for k, v in state.items() if not isinstance(v, np.ndarray)}
    if _META in arrays:
        raise ValueError(f"{_META!r} is reserved")
    blob = json.dumps({"schema": STATE_SCHEMA, "values": meta}).encode()
    buffer = io.BytesIO()
    entries: dict[str, Any] = {**arrays, _META: np.frombuffer(blob, dtype=np.uint8)}
    np.savez(buffer, allow_pickle=False, **entries)
    return buffer.getvalue()


def load_state(data: bytes, source: str) -> dict[str, Any]:
    """The state dict `state_bytes` wrote; an older or foreign file is refused, naming it."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as found:
            if _META not in found.files:
                raise DataValidationError(f"{source}: not a fedcredit state file")
            meta = json.loads(found[_META].tobytes())
            state: dict[str, Any] = {k: found[k] for k in found.files if k != _META}
    except (zipfile.BadZipFile, ValueError, OSError) as err:
        raise DataValidationError(
            f"{source}: not a fedcredit state file (saved before schema {STATE_SCHEMA}?); "
            f"delete it and run the job again") from err
    if meta.get("schema") != STATE_SCHEMA:
        raise DataValidationError(f"{source}: state schema {meta.get('schema')!r}, this version "
                                  f"reads {STATE_SCHEMA}")
    state.update(meta["values"])
    return state
