"""20% injected faults during a full sync and three incremental ones change no exported figure.

Two sandboxes with the same seed serve the same organisation and are stepped with the same
``add_activity`` calls; one answers a fifth of the API requests with a 429 + Retry-After, a 500,
502 or 503, a connection reset, a truncated JSON body or a slow answer. After every sync the
exposition of the data families at a fixed clock is identical, sample for sample, to the clean run's.
"""

from __future__ import annotations

from pathlib import Path

from reliability_kit import data_tables, organisation, quick_sleep, samples, start_sandbox, sync_until_ok, tomorrow

from collector.runner import Runner
from collector.store import Store

FAULT_KINDS = ("429", "500", "502", "503", "reset", "truncate", "slow")


def test_faults_during_full_and_incremental_syncs_change_nothing_exported(tmp_path: Path) -> None:
    now = tomorrow()
    clean = start_sandbox(seed=5, work_items=300, now=now)
    faulty = start_sandbox(seed=5, work_items=300, now=now, fault_rate=0.2, fault_kinds=FAULT_KINDS)
    try:
        runs = {}
        for label, sandbox in (("clean", clean), ("faulty", faulty)):
            config = organisation(sandbox, f"sqlite:///{tmp_path}/{label}.db")
            store = Store(config.store)
            runs[label] = (config, store, Runner(config, store, sleep=quick_sleep))
        clock = now.timestamp() + 4 * 3600  # after the three activity steps (one hour each)
        failed_passes = 0
        for step in range(4):
            if step:
                assert clean.add_activity(1) == faulty.add_activity(1)
            for label, (_config, _store, runner) in runs.items():
                failed = sync_until_ok(runner)
                if label == "clean":
                    assert not failed, [r.error for r in failed]
                failed_passes += len(failed)
            (clean_config, clean_store, _), (faulty_config, faulty_store, _) = runs["clean"], runs["faulty"]
            expected = samples(clean_store, clean_config, clock)
            assert len(expected) > 1000
            assert samples(faulty_store, faulty_config, clock) == expected, f"after sync {step}"
            assert data_tables(faulty_store) == data_tables(clean_store), f"after sync {step}"

        injected = faulty.server.stats.snapshot()["faults"]
        print(f"faults injected: {injected}; passes that failed after their retries and were resumed: {failed_passes}")
        assert set(injected) == set(FAULT_KINDS)
        # (fewer since Azure Pipelines opens only successful production deployments, and fewer again
        # since GitHub reads its histories over GraphQL, 100 records a request)
        assert sum(injected.values()) >= 150
        # the collector saw them: retried attempts are counted by status code
        codes = {code for (_source, code) in faulty_store.api_request_counts()}
        assert {"429", "500", "502", "503", "error"} <= codes
        assert clean.server.stats.snapshot()["faults"] == {}
    finally:
        clean.stop()
        faulty.stop()


def test_every_pass_moves_forward_when_half_the_requests_fail(tmp_path: Path) -> None:
    """At a 50% fault rate a pass rarely ends, but each one commits what it read: ``cycletime sync``
    run again and again (a new process each time, so no cache survives) gets there, and the store
    then equals a clean run's.

    One request in flight, so the sandbox's seeded faults fall on the same requests every run: with
    reads ahead a pass can, by chance, fail on its first reads before anything is due to be stored
    (tests/sources/test_azure_concurrency.py proves concurrent reading stores what serial stores
    under faults)."""
    now = tomorrow()
    clean = start_sandbox(seed=5, work_items=300, now=now)
    faulty = start_sandbox(seed=5, work_items=300, now=now, fault_rate=0.5)
    try:
        needed = {}
        for source in ("pipelines", "pipelines_tailspin"):
            stores = {}
            for label, sandbox in (("clean", clean), ("faulty", faulty)):
                config = organisation(sandbox, f"sqlite:///{tmp_path}/{label}-{source}.db", max_concurrency=1)
                stores[label] = (config, Store(config.store))
            clean_config, clean_store = stores["clean"]
            assert Runner(clean_config, clean_store, sleep=quick_sleep).run(source).ok
            config, store = stores["faulty"]
            passes, reached = 0, store.content_digest()
            while True:
                passes += 1
                assert passes <= 30, f"{source}: no complete pass in 30"
                result = Runner(config, store, sleep=quick_sleep).run(source)  # a fresh process each time
                if result.ok:
                    break
                now_reached = store.content_digest()
                assert now_reached != reached, f"{source}: pass {passes} failed without storing anything new"
                reached = now_reached
            needed[source] = passes
            assert data_tables(store) == data_tables(clean_store)
            assert len(store.deployments(source)) > 100
            store.close()
            clean_store.close()
        print(f"complete after {needed} passes")
        assert max(needed.values()) > 2, "the faults hardly failed a pass: the test proves nothing"
    finally:
        clean.stop()
        faulty.stop()
