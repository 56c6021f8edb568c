"""The driver's secrets that must outlive a process (the VLR arbiter's key until its job ends).

One private file per entry under `<state_dir>/vault/<job>/`, written atomically with mode 0600;
an entry is deleted as soon as the driver drops it. Nothing here is ever logged or sent.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, MutableMapping
from pathlib import Path

from common.files import atomic_write

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")


class FileVault(MutableMapping[str, bytes]):
    """A job's secrets as private files in one directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, name: str) -> Path:
        if not _NAME.match(name):
            raise KeyError(f"vault entry name {name!r} is not a plain lowercase name")
        return self.directory / name

    def __getitem__(self, name: str) -> bytes:
        path = self._path(name)
        if not path.is_file():
            raise KeyError(name)
        return path.read_bytes()

    def __setitem__(self, name: str, data: bytes) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(self._path(name), data, mode=0o600)

    def __delitem__(self, name: str) -> None:
        path = self._path(name)
        if not path.is_file():
            raise KeyError(name)
        path.unlink()

    def __iter__(self) -> Iterator[str]:
        if not self.directory.is_dir():
            return iter(())
        return iter(sorted(p.name for p in self.directory.iterdir() if _NAME.match(p.name)))

    def __len__(self) -> int:
        return sum(1 for _ in self)
