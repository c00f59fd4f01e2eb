"""Sealing of sensitive config values with a data key per aggregate (envelope encryption).

Each aggregate's data key is stored wrapped by the master key; deleting that row makes the
aggregate's secrets unreadable for good (crypto-shredding), while the event log stays intact.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any
from uuid import UUID

from cryptography.fernet import Fernet, InvalidToken

from domain.secrets import SEALED, is_sealed

PREFIX = "v1:"


class SecretUnavailable(Exception):
    """The aggregate's data key was shredded or the master key does not match."""


class FernetSealer:
    def __init__(self, datastore: Any, master_key: str) -> None:
        self.datastore = datastore
        self.master = Fernet(master_key.encode())
        self._data_key = lru_cache(maxsize=4096)(self._load_or_create_key)

    def _load_or_create_key(self, aggregate_id: UUID) -> Fernet:
        fresh = self.master.encrypt(Fernet.generate_key())
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                "INSERT INTO ledger_data_keys (aggregate_id, wrapped_key) VALUES (%s, %s) "
                "ON CONFLICT (aggregate_id) DO NOTHING",
                (aggregate_id, fresh),
            )
            curs.execute(
                "SELECT wrapped_key FROM ledger_data_keys WHERE aggregate_id = %s", (aggregate_id,)
            )
            row = curs.fetchone()
        if row is None:
            raise SecretUnavailable(f"data key of {aggregate_id} is gone")
        try:
            return Fernet(self.master.decrypt(bytes(row["wrapped_key"])))
        except InvalidToken:
            raise SecretUnavailable("the master key does not match the stored data keys") from None

    def seal(self, aggregate_id: UUID, value: Any) -> dict[str, str]:
        token = self._data_key(aggregate_id).encrypt(json.dumps(value).encode())
        return {SEALED: PREFIX + token.decode()}

    def unseal(self, aggregate_id: UUID, sealed: Any) -> Any:
        if not is_sealed(sealed):
            raise ValueError("not a sealed value")
        try:
            token = sealed[SEALED].removeprefix(PREFIX).encode()
            return json.loads(self._data_key(aggregate_id).decrypt(token))
        except InvalidToken:
            raise SecretUnavailable(f"cannot unseal a secret of {aggregate_id}") from None

    def shred(self, aggregate_id: UUID) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute("DELETE FROM ledger_data_keys WHERE aggregate_id = %s", (aggregate_id,))
        self._data_key.cache_clear()


def embedded_master_key(data_dir: Path) -> str:
    """The embedded mode keeps its master key in a 0600 file beside its data."""
    path = data_dir / "master.key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(Fernet.generate_key().decode())
    return path.read_text().strip()
