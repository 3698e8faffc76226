"""``--accounts.shard=i/n``: which accounts this replica polls, of many replicas.

Service providers watch hundreds of tenants; one exporter per shard of them
keeps each replica's polls and series small. Every replica reads the same
configuration file and keeps the accounts whose name hashes to its shard.

The hash is rendezvous hashing (highest random weight) over SHA-256 of the
account name and the shard number: stable across restarts, hosts and versions
(never Python's salted ``hash()``), and when the number of replicas changes
from n to n+1 only the accounts that the new shard wins move, about 1/(n+1)
of them, instead of nearly all as with ``hash % n``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace

from mimecast_exporter.config import Config

_FORM = re.compile(r"(\d{1,6})/(\d{1,6})")


def _weight(account: str, shard: int) -> bytes:
    return hashlib.sha256(f"{shard}/{account}".encode()).digest()


def shard_of(account: str, count: int) -> int:
    """The shard (0 to count-1) that polls ``account``."""
    return max(range(count), key=lambda shard: _weight(account, shard))


@dataclass(frozen=True)
class Shard:
    index: int  # from 0, as a StatefulSet's pod ordinal
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``i/n`` with 0 <= i < n; ValueError saying what is wrong otherwise."""
        found = _FORM.fullmatch(text.strip())
        if found is None:
            raise ValueError(f"expected i/n, such as 0/3 (shard 0 of 3); found {text!r}")
        index, count = int(found.group(1)), int(found.group(2))
        if count < 1:
            raise ValueError(f"the number of shards must be at least 1; found {text!r}")
        if index >= count:
            raise ValueError(
                f"shards count from 0, so shard {index} of {count} does not exist"
                f" (0 to {count - 1}); found {text!r}"
            )
        return cls(index, count)

    def owns(self, account: str) -> bool:
        return shard_of(account, self.count) == self.index

    def select(self, config: Config) -> Config:
        """``config`` with only the accounts of this shard."""
        return replace(config, accounts=tuple(a for a in config.accounts if self.owns(a.name)))

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


ALL = Shard(0, 1)  # one replica polls every account
