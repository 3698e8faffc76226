"""--accounts.shard=i/n: every account polled by exactly one replica, stably."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest
import yaml

from mimecast_exporter.config import Config
from mimecast_exporter.shard import ALL, Shard, shard_of
from tests.conftest import hmac_account, poll_config

NAMES = [f"tenant-{i:03d}" for i in range(200)]


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("1", "expected i/n"),
        ("a/3", "expected i/n"),
        ("-1/3", "expected i/n"),
        ("3/3", "shards count from 0, so shard 3 of 3 does not exist (0 to 2)"),
        ("0/0", "at least 1"),
    ],
)
def test_a_bad_shard_says_what_is_wrong(text, error):
    with pytest.raises(ValueError, match=error.replace("(", r"\(").replace(")", r"\)")):
        Shard.parse(text)


def test_every_account_is_in_exactly_one_shard_and_shards_are_balanced():
    for count in (1, 2, 3, 5, 8):
        owners = [[s for s in range(count) if Shard(s, count).owns(n)] for n in NAMES]
        assert all(len(o) == 1 for o in owners)
        sizes = Counter(o[0] for o in owners)
        assert len(sizes) == count
        assert min(sizes.values()) >= 200 / count * 0.5  # no replica idle, none swamped
        assert max(sizes.values()) <= 200 / count * 1.6


def test_the_hash_is_stable_across_runs_and_hosts():
    # Pinned: a replica of another version (or host) must pick the same accounts.
    # Python's salted hash() would change with every process.
    names = ("acme", "globex", "initech", "umbrella", "tenant-000", "tenant-001")
    assert [shard_of(n, 3) for n in names] == [1, 0, 1, 2, 1, 2]
    code = (
        "from mimecast_exporter.shard import shard_of;"
        "print([shard_of(f'tenant-{i:03d}', 7) for i in range(50)])"
    )
    runs = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
        for _ in range(2)
    }
    assert len(runs) == 1
    assert runs.pop().strip() == str([shard_of(f"tenant-{i:03d}", 7) for i in range(50)])


def test_one_more_replica_moves_only_the_accounts_it_takes():
    for count in (2, 3, 4):
        before = {n: shard_of(n, count) for n in NAMES}
        after = {n: shard_of(n, count + 1) for n in NAMES}
        moved = [n for n in NAMES if before[n] != after[n]]
        assert all(after[n] == count for n in moved)  # only to the new shard
        assert len(moved) <= 200 / (count + 1) * 1.6


def test_select_keeps_the_shard_accounts_in_order():
    config = Config(poll_config(), tuple(hmac_account("http://127.0.0.1:1", name=n) for n in NAMES))
    parts = [Shard(i, 3).select(config).accounts for i in range(3)]
    assert sorted(a.name for part in parts for a in part) == NAMES
    for part in parts:
        assert [a.name for a in part] == [n for n in NAMES if n in {a.name for a in part}]
    assert ALL.select(config) == config


def test_config_check_says_which_accounts_the_shard_polls(tmp_path):
    accounts = [
        {
            "name": n,
            "base_url": "https://eu-api.services.mimecast.com",
            "oauth2": {"client_id": "id", "client_secret": "secret"},
        }
        for n in NAMES[:10]
    ]
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump({"accounts": accounts}))
    mine = [n for n in NAMES[:10] if shard_of(n, 2) == 1]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mimecast_exporter",
            "--config.file",
            str(config),
            "--config.check",
            "--accounts.shard=1/2",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert f"shard 1/2: polls {len(mine)} of 10 accounts ({', '.join(mine)})" in result.stdout
    assert f"accounts: {len(mine)}" in result.stdout


def test_a_bad_shard_flag_is_a_usage_error(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mimecast_exporter", "--accounts.shard=2/2", "--config.check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "--accounts.shard: shards count from 0" in result.stderr
