"""Two core replicas and two facades on one database (PostgreSQL in CI) and one Redis, each a real
process: what the admin API does through one replica holds on the other, the per-license cap and
the per-account in-flight counts are shared, stored responses are found from either, and a core
that dies does not leave its in-flight counts behind. Facade i talks to core i alone here, so
"the other replica" is always a different core. `-m replicas` selects these."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.cluster import MODEL, Cluster, redis_server, shared_database, start_cluster
from tests.store_backends import distinct_token

# The first test also pays for starting six processes (the fixture is the module's).
pytestmark = [pytest.mark.replicas, pytest.mark.timeout(300)]

# Leases and slots of a dead core expire after this many seconds (renewed every third of it).
LEASE_TTL_S = 6
# 30 frames 200 ms apart: a stream of about 6 s, long enough to be seen in flight.
SLOW = "slow replicas\nsim: chunks=30 delay_ms=200"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("replicas")
    with redis_server(tmp) as redis_url, shared_database(tmp) as database_url:
        # The periodic store sync is an hour away: only Redis can explain what the other core knows.
        env = {
            "CURSORGATE_STORE_SYNC_INTERVAL": "3600",
            "CURSORGATE_LICENSE_MAX_CONCURRENT": "2",
            "CURSORGATE_REDIS_SLOT_TTL": str(LEASE_TTL_S),
        }
        cluster = start_cluster(tmp, redis_url, database_url, env, pinned=True)
        try:
            yield cluster
        finally:
            cluster.stop()


class Stream:
    """One streamed chat read on a thread; whether its first chunk came, its status, its end."""

    def __init__(self, url: str, license: str, content: str = SLOW) -> None:
        self.status = 0
        self.done = False
        self.error: BaseException | None = None
        self.first = threading.Event()
        body = {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": content}]}
        headers = {"authorization": f"Bearer {license}"}
        self._thread = threading.Thread(target=self._run, args=(url, body, headers), daemon=True)
        self._thread.start()

    def _run(self, url: str, body: dict[str, Any], headers: dict[str, str]) -> None:
        try:
            with httpx.stream("POST", f"{url}/chat/completions", json=body, headers=headers, timeout=60) as r:
                self.status = r.status_code
                for line in r.iter_lines():
                    if line.startswith("data:"):
                        self.first.set()
                    if line == "data: [DONE]":
                        self.done = True
        except BaseException as err:  # reported by the test
            self.error = err
        finally:
            self.first.set()

    def join(self, timeout: float = 60) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the stream did not end"


def until(check: Any, timeout: float = 10.0) -> Any:
    """check() until it is truthy or the time is up; its last value."""
    deadline = time.monotonic() + timeout
    while not (value := check()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return value


def test_a_license_created_on_one_replica_works_on_the_other_and_a_revocation_too(cluster: Cluster) -> None:
    created = cluster.admin(0, "POST", "/licenses", {"name": "made on replica 0"})
    assert created.status_code == 201, created.text
    key, license_id = created.json()["key"], created.json()["license"]["id"]

    # Core 1 learns of it from Redis (a store re-read), not from its hourly sync.
    answer = until(lambda: (r := cluster.chat(1, license=key)).status_code == 200 and r)
    assert answer, cluster.logs()
    assert answer.json()["choices"][0]["message"]["content"]

    # Revoked through replica 1: replica 0 refuses it as promptly.
    assert cluster.admin(1, "POST", f"/licenses/{license_id}/revoke").status_code == 200
    refused = until(lambda: (r := cluster.chat(0, license=key)).status_code == 401 and r)
    assert refused, "replica 0 still accepts a license revoked on replica 1"
    assert refused.json()["error"]["message"] == "This license has been revoked."

    # Enabled again through replica 0: replica 1 serves it again.
    enabled = cluster.admin(0, "PATCH", f"/licenses/{license_id}", {"enabled": True})
    assert enabled.status_code == 200 and enabled.json()["revoked"] is False
    assert until(lambda: cluster.chat(1, license=key).status_code == 200), (
        "replica 1 still refuses a license enabled again on replica 0"
    )


def test_an_account_disabled_on_one_replica_is_skipped_by_the_other(cluster: Cluster) -> None:
    spare = distinct_token("auth0|user_cluster_spare")
    added = cluster.admin(0, "POST", "/accounts", {"token": spare, "label": "spare"})
    assert added.status_code == 201, added.text
    assert until(lambda: "spare" in cluster.accounts(1)), "core 1 never saw the account added on core 0"
    spare_id = cluster.accounts(0)["spare"]["id"]
    # An admin setting changed on core 0 (the label) is what core 1 shows too.
    assert cluster.admin(0, "PATCH", f"/accounts/{spare_id}", {"label": "spare account"}).status_code == 200
    assert until(lambda: "spare account" in cluster.accounts(1)), "core 1 kept the old label"
    assert cluster.admin(0, "PATCH", f"/accounts/{spare_id}", {"label": "spare"}).status_code == 200
    assert until(lambda: "spare" in cluster.accounts(1))
    primary_id = cluster.accounts(0)["CURSOR_TOKEN"]["id"]

    try:
        disabled = cluster.admin(0, "PATCH", f"/accounts/{primary_id}", {"enabled": False})
        assert disabled.status_code == 200 and disabled.json()["enabled"] is False
        assert until(lambda: cluster.accounts(1)["CURSOR_TOKEN"]["enabled"] is False)

        before = cluster.accounts(1)
        for _ in range(4):
            assert cluster.chat(1).status_code == 200
        after = cluster.accounts(1)
        # Every request on core 1 went to the spare account, none to the one disabled on core 0.
        assert int(after["spare"]["requests"]) - int(before["spare"]["requests"]) == 4
        assert after["CURSOR_TOKEN"]["requests"] == before["CURSOR_TOKEN"]["requests"]
    finally:
        # Re-enabled on core 0: core 1 uses it again (the later tests need both accounts).
        assert cluster.admin(0, "PATCH", f"/accounts/{primary_id}", {"enabled": True}).status_code == 200
        assert until(lambda: cluster.accounts(1)["CURSOR_TOKEN"]["enabled"] is True)


def test_the_license_cap_holds_across_replicas(cluster: Cluster) -> None:
    streams = [Stream(cluster.url(0), cluster.license) for _ in range(2)]
    try:
        for stream in streams:
            assert stream.first.wait(30) and stream.status == 200
        refused = cluster.chat(1)
        assert refused.status_code == 429  # core 1 counts core 0's two open streams
        assert "at most 2" in refused.json()["error"]["message"]
        assert refused.headers["retry-after"] == "1"
    finally:
        for stream in streams:
            stream.join()
    assert all(s.done for s in streams)
    assert until(lambda: cluster.chat(1).status_code == 200)  # the slots came back


def test_a_response_stored_via_one_replica_is_retrieved_via_the_other(cluster: Cluster) -> None:
    first = openai.OpenAI(base_url=cluster.url(0), api_key=cluster.license)
    other = openai.OpenAI(base_url=cluster.url(1), api_key=cluster.license)
    made = first.responses.create(model=MODEL, input="remember the word heliotrope", store=True)
    assert made.output_text

    found = other.responses.retrieve(made.id)
    assert found.id == made.id
    assert found.output_text == made.output_text
    follow_up = other.responses.create(model=MODEL, input="and now?", previous_response_id=made.id)
    assert follow_up.output_text
    # Core 1 sent the stored turn upstream with the new one.
    sent = str(cluster.sim_control("requests")[-1]["view"])
    assert "remember the word heliotrope" in sent and "and now?" in sent


def in_flight(cluster: Cluster, i: int) -> dict[str, int]:
    return {label: int(a["in_flight"]) for label, a in cluster.accounts(i).items()}


def served_by(cluster: Cluster, i: int) -> str:
    """One chat through replica i; the label of the account its core gave it to."""
    before = {label: int(a["requests"]) for label, a in cluster.accounts(i).items()}
    assert cluster.chat(i).status_code == 200
    after = {label: int(a["requests"]) for label, a in cluster.accounts(i).items()}
    (label,) = [name for name in after if after[name] != before.get(name)]
    return label


def test_least_loaded_routing_counts_the_other_replicas_calls_and_a_dead_ones_come_back(
    cluster: Cluster,
) -> None:
    """Two idle accounts: a core alone takes the one it used least recently. The cores are led to
    prefer the same one (`y`); core 0 holds a call on it, so core 1, counting that call, takes
    the other (`x`). A core that dies holding its call stops renewing the lease: the account
    counts as busy until the lease expires, then not."""
    labels = set(cluster.accounts(0))
    if labels != {"CURSOR_TOKEN", "spare"}:
        pytest.skip("needs the spare account of the disabled-account test")
    x = served_by(cluster, 1)
    (y,) = labels - {x}
    # Core 1 now prefers y. Lead core 0 to prefer y too: its last call must have gone to x.
    for _ in range(3):
        if served_by(cluster, 0) == x:
            break
    else:
        pytest.fail("core 0 never served a call with the other account")

    # Core 0's call outlasts core 1's (and core 0 is killed during it).
    held = Stream(cluster.url(0), cluster.license, "held\nsim: chunks=150 delay_ms=200")
    assert held.first.wait(30) and held.status == 200
    assert in_flight(cluster, 0) == {y: 1, x: 0}
    second = Stream(cluster.url(1), cluster.license)
    assert second.first.wait(30) and second.status == 200
    assert in_flight(cluster, 1) == {y: 0, x: 1}  # alone it would have taken y
    second.join()
    assert second.done

    # Core 1 prefers y again (it used x last). Core 0 dies holding y: y stays counted busy.
    popen = cluster.cores[0].popen
    assert popen is not None
    popen.kill()
    popen.wait(10)
    killed_at = time.monotonic()
    assert served_by(cluster, 1) == x
    assert time.monotonic() - killed_at < LEASE_TTL_S  # that was within the dead lease's life

    # Past the lease's life y is free again, and core 1's preference wins.
    time.sleep(max(0.0, LEASE_TTL_S + 1.5 - (time.monotonic() - killed_at)))
    assert served_by(cluster, 1) == y, "the dead core's lease never expired"
    held.join()
    cluster.cores[0].start()  # for any test after this one
