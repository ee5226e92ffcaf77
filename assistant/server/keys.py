"""API keys for `medassist serve`, kept hashed in the home (`HOME/api_keys.json`, readable by its owner only).

A key is `mda_<id>_<secret>`: the id finds the entry without scanning, the secret is 32 random bytes. Only
sha256(key) is stored, so the file gives nobody a working key; the key itself is printed once, by `keys add`.
The server re-reads the file when it changes, so a revoked key stops working without a restart.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import tempfile
import threading
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

PREFIX = "mda_"
FILE = "api_keys.json"


@dataclass(frozen=True)
class KeyRecord:
    id: str
    name: str
    created_at: str
    sha256: str
    revoked_at: str | None = None


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class KeyStore:
    def __init__(self, home: Path):
        self.path = Path(home) / FILE
        self._lock = threading.Lock()
        self._cache: tuple[tuple[int, int] | None, dict[str, KeyRecord]] = (None, {})

    def records(self) -> dict[str, KeyRecord]:
        """Every key ever added, by id; read again whenever the file changed (a `keys revoke` in another process)."""
        try:
            stat = self.path.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            return {}
        with self._lock:
            if self._cache[0] != stamp:
                rows = json.loads(self.path.read_text(encoding="utf-8"))
                self._cache = (stamp, {row["id"]: KeyRecord(**row) for row in rows})
            return self._cache[1]

    def active(self) -> list[KeyRecord]:
        return [r for r in self.records().values() if r.revoked_at is None]

    def verify(self, key: str) -> KeyRecord | None:
        """The active key record this key belongs to, or None; compared in constant time."""
        if not key.startswith(PREFIX) or key.count("_") < 2:
            return None
        record = self.records().get(key[len(PREFIX):].split("_", 1)[0])
        if record is None or record.revoked_at is not None:
            return None
        return record if secrets.compare_digest(_hash(key), record.sha256) else None

    def add(self, name: str) -> tuple[KeyRecord, str]:
        """A new key: its record, and the key itself (shown to the user once, never stored)."""
        records = dict(self.records())
        key_id = secrets.token_hex(4)
        while key_id in records:
            key_id = secrets.token_hex(4)
        key = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        record = KeyRecord(key_id, name, _now(), _hash(key))
        records[key_id] = record
        self._write(records)
        return record, key

    def revoke(self, key_id: str) -> KeyRecord | None:
        """Revoke by id (as `keys list` shows it); the record stays, marked, so the list says when."""
        records = dict(self.records())
        record = records.get(key_id.removeprefix(PREFIX))
        if record is None:
            return None
        if record.revoked_at is None:
            record = records[record.id] = KeyRecord(**{**asdict(record), "revoked_at": _now()})
            self._write(records)
        return record

    def _write(self, records: dict[str, KeyRecord]) -> None:
        """Replace the file in one step (a server reading it sees the old list or the new one), owner-only."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".api_keys.")  # created 0600
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                json.dump([asdict(r) for r in records.values()], file, indent=1)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
