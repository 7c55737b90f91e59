"""Which shard owns a scope, and which shard this process is (collector/sharding.py)."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import github_source, sandbox_config

from collector.cli import main
from collector.compute import Figures
from collector.errors import ConfigError
from collector.sharding import Partition, Shards, check_store, lock_key, owner, resolve, scope_hash


def test_the_owner_is_the_first_eight_bytes_of_sha1_mod_n() -> None:
    digest = hashlib.sha1(b"github/contoso/web").digest()
    assert scope_hash("github", "contoso/web") == int.from_bytes(digest[:8], "big")
    assert owner("github", "contoso/web", 3) == int.from_bytes(digest[:8], "big") % 3
    # pinned: a scope never moves between releases (a rolling update would poll it twice)
    assert scope_hash("boards", "Fabrikam") == 0xD8D325D615AFB483
    assert [owner("github", f"contoso/repo-{i}", 4) for i in range(8)] == [1, 3, 1, 3, 2, 2, 3, 0]


def test_lock_keys_fit_a_postgresql_bigint_and_keep_the_hash() -> None:
    for i in range(500):
        key = lock_key("github", f"o/r{i}")
        assert -(2**63) <= key < 2**63
        assert key % 2**64 == scope_hash("github", f"o/r{i}")


def test_scopes_spread_over_the_shards_and_each_has_one_owner() -> None:
    scopes = [f"contoso/repo-{i}" for i in range(2000)]
    counts = Counter(owner("github", s, 4) for s in scopes)
    assert set(counts) == {0, 1, 2, 3}
    assert min(counts.values()) > 400  # ~500 each
    for s in scopes[:50]:
        assert sum(Shards(i, 4).owns("github", s) for i in range(4)) == 1


def test_one_shard_owns_everything() -> None:
    assert Shards().owns("github", "anything") and not Shards().sharded


def test_flags_win_over_the_environment() -> None:
    env = {"CYCLETIME_SHARD": "1", "CYCLETIME_TOTAL_SHARDS": "3", "HOSTNAME": "cycletime-2"}
    assert resolve(0, 2, env) == Shards(0, 2)
    assert resolve(None, None, env) == Shards(1, 3)


def test_a_statefulset_pod_name_gives_the_ordinal() -> None:
    assert resolve(None, 4, {"CYCLETIME_POD_NAME": "cycletime-collector-3", "HOSTNAME": "x-1"}) == Shards(3, 4)
    assert resolve(None, None, {"CYCLETIME_TOTAL_SHARDS": "4", "HOSTNAME": "cycletime-collector-2"}) == Shards(2, 4)
    # one shard needs no name
    assert resolve(None, None, {"HOSTNAME": "laptop"}) == Shards(0, 1)


@pytest.mark.parametrize(
    ("shard", "total", "env", "says"),
    [
        (None, 3, {"HOSTNAME": "laptop"}, "which shard is this"),
        (3, 3, {}, "not one of 0 … 2"),
        (None, 0, {}, "not a positive number"),
        (None, None, {"CYCLETIME_TOTAL_SHARDS": "three"}, "not a whole number"),
        (None, 2, {"CYCLETIME_POD_NAME": "cycletime-5"}, "not one of 0 … 1"),
    ],
)
def test_an_unusable_shard_is_a_config_error(shard: int | None, total: int | None, env: dict, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        resolve(shard, total, env)


def test_more_than_one_shard_needs_postgresql() -> None:
    check_store(Shards(0, 1), "sqlite:///x.db")
    check_store(Shards(1, 2), "postgresql://u@h/db")
    with pytest.raises(ConfigError, match="2 shards need one shared PostgreSQL store, not sqlite"):
        check_store(Shards(1, 2), "sqlite:///x.db")


def _figures() -> Figures:
    figures = Figures()
    for i in range(40):
        figures.lead_time.add(("github", f"o/r{i}", "t", "Bug"), 1.0, 2.0)
        figures.change_lead_time.add(("github", f"o/r{i}", "production"), 1.0, 3.0)
        figures.deployments[("github", f"o/r{i}", "production", "true", "success")] += 2
    figures.lead_time.add(("boards", "Fabrikam", "t", "Bug"), 1.0, 5.0)
    figures.rejected[("github", "clock_skew")] = 1
    return figures


def test_the_shards_partition_every_series_without_changing_a_value() -> None:
    whole = _figures()
    scope_of = {"github": lambda value: value.lower(), "boards": lambda value: "Fabrikam"}
    parts = [Partition(Shards(i, 3), scope_of).figures(whole) for i in range(3)]
    for attr in ("lead_time", "change_lead_time"):
        seen: list[tuple[str, ...]] = []
        for part in parts:
            seen += list(getattr(part, attr).by_labels)
            for labels, block in getattr(part, attr).by_labels.items():
                assert np.array_equal(block, getattr(whole, attr).by_labels[labels])
        assert sorted(seen) == sorted(getattr(whole, attr).by_labels)  # each exactly once
    assert sum((p.deployments for p in parts), Counter()) == whole.deployments
    assert sum((p.rejected for p in parts), Counter()) == whole.rejected
    assert [bool(p.rejected) for p in parts].count(True) == 1
    assert Partition(Shards(), scope_of).figures(whole) is whole


def test_check_config_says_in_one_line_that_shards_need_postgresql(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(sandbox_config(f"sqlite:///{tmp_path}/s.db", [github_source("http://127.0.0.1:1", "t")]))
    assert main(["check-config", "--config", str(config), "--total-shards", "3", "--shard", "1"]) == 2
    err = capsys.readouterr().err
    assert "store: 3 shards need one shared PostgreSQL store, not sqlite" in err
    assert main(["check-config", "--config", str(config)]) == 0
    postgres = tmp_path / "pg.yaml"
    postgres.write_text(sandbox_config("postgresql://u@127.0.0.1:1/db", [github_source("http://127.0.0.1:1", "t")]))
    assert main(["check-config", "--config", str(postgres), "--total-shards", "3", "--shard", "1"]) == 0
    assert "shard 1 of 3" in capsys.readouterr().out
