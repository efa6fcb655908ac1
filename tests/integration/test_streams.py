"""Server-Sent Events that resume and multiplex (docs/api.md, issue 15 item 4).

The single-name stream's `id:` is the document's version; the multiplexed
stream's a cursor of versions. A reconnect with `Last-Event-ID` gets what it
does not hold (older, unknown or garbage ids: everything at once), nothing it
holds, 204 when it holds everything and everything is final, and the current
answer when the clock has moved the version's stage since it was projected.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import psycopg
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from api import cursor
from demo.embedded import EmbeddedRedis, free_port
from shared.settings import Settings
from tests.integration.rows import add_job, add_profile
from tests.integration.sse import Listener
from tests.integration.stack import ApiThread, ProjectorThread, eventually

pytestmark = pytest.mark.usefixtures("projector")

VOLATILE = ("processing_duration_seconds", "profile_age_hours")


def _one(api: ApiThread, username: str, last_event_id: str | None = None) -> Listener:
    return Listener(api.base_url, f"/api/profile/{username}/status/stream", last_event_id)


def _many(api: ApiThread, usernames: str, last_event_id: str | None = None) -> Listener:
    return Listener(api.base_url, f"/api/status/stream?usernames={usernames}", last_event_id)


def _status(http: httpx.Client, username: str) -> dict[str, Any]:
    data: dict[str, Any] = http.get(f"/api/profile/{username}/status").json()["data"]
    return data


def _stable(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in VOLATILE}


def _stored_version(rds: redis.Redis, settings: Settings, username: str) -> int:
    raw = rds.get(settings.keys().document(username))
    assert raw is not None
    return int(orjson.loads(raw)["version"])


# --------------------------------------------------------------------------- one username


def test_the_id_is_the_stored_documents_version(
    api: ApiThread, http: httpx.Client, db: psycopg.Connection, rds: redis.Redis, settings: Settings
) -> None:
    add_job(db, "versioned", status="PENDING")
    eventually(lambda: _status(http, "versioned")["status"] == "PENDING")
    listener = _one(api, "versioned")
    eventually(lambda: listener.statuses() == ["PENDING"])
    assert listener.last_id() == str(_stored_version(rds, settings, "versioned"))


@pytest.mark.parametrize(
    ("state", "setup"),
    [
        ("PENDING", lambda db, name: add_job(db, name, status="PENDING")),
        ("PROCESSING", lambda db, name: add_job(db, name, status="PROCESSING", last_attempt=datetime.now(UTC))),
        ("FAILED", lambda db, name: add_job(db, name, status="FAILED", attempts=1, last_attempt=datetime.now(UTC))),
        ("NOT_FOUND", lambda db, name: None),
    ],
)
def test_resuming_at_the_current_version_repeats_nothing(
    api: ApiThread, http: httpx.Client, db: psycopg.Connection, state: str, setup: Any
) -> None:
    name = f"same_{state.lower()}"
    setup(db, name)
    first = _one(api, name)
    eventually(lambda: first.statuses() == [state])
    resumed = _one(api, name, first.last_id())
    eventually(lambda: resumed.caught_up)
    assert resumed.events == [] and not resumed.ended.is_set()
    # The next event is the next change, and nothing before it.
    add_profile(db, name)
    eventually(lambda: resumed.statuses() == ["exists"])
    assert resumed.ended.wait(5)
    assert resumed.statuses() == ["exists"]


def test_resuming_with_an_older_or_unknown_id_gets_the_current_state_at_once(
    api: ApiThread, http: httpx.Client, db: psycopg.Connection
) -> None:
    name = "resume_other"
    add_job(db, name, status="PENDING")
    first = _one(api, name)
    eventually(lambda: first.statuses() == ["PENDING"])
    db.execute("UPDATE queue SET status = 'PROCESSING', last_attempt = now() WHERE username = %s", (name,))
    eventually(lambda: first.statuses() == ["PENDING", "PROCESSING"])
    older, current = first.of()[0]["id"], first.last_id()
    newer = str(int(current) + 10**6)  # from before a Redis flush, say: not one we sent for this document
    for held in [older, "0", "", "garbage", "12abc", "-5", "1.5", "1e9", "9" * 40, newer]:
        resumed = _one(api, name, held)
        eventually(lambda resumed=resumed: resumed.caught_up)
        assert resumed.statuses() == ["PROCESSING"], held
        assert resumed.last_id() == current, held
        assert _stable(resumed.of()[0]["data"]["data"]) == _stable(first.of()[-1]["data"]["data"]), held


@pytest.mark.parametrize(
    "finish",
    [
        lambda db, name: add_profile(db, name),
        lambda db, name: add_job(db, name, status="COMPLETED"),
        lambda db, name: add_job(db, name, status="FAILED", attempts=3, last_attempt=datetime.now(UTC)),
    ],
    ids=["exists", "COMPLETED", "FAILED-final"],
)
def test_a_finished_job_resumed_at_its_version_gets_204(
    api: ApiThread, http: httpx.Client, db: psycopg.Connection, finish: Any
) -> None:
    name = "finished_job"
    add_job(db, name, status="PENDING")
    first = _one(api, name)
    eventually(lambda: len(first.events) == 1)
    pending_id = first.last_id()
    finish(db, name)
    assert first.ended.wait(5), "the stream ends after a terminal state"
    final_id = first.last_id()
    url = f"/api/profile/{name}/status/stream"
    assert http.get(url, headers={"Last-Event-ID": final_id}).status_code == 204
    for other in (pending_id, "garbage"):  # anything else: the final state once, then the end
        again = _one(api, name, other)
        assert again.ended.wait(5)
        assert (again.status_code, len(again.events), again.last_id()) == (200, 1, final_id)


def test_a_stage_the_clock_crossed_since_the_version_was_projected_is_sent_on_resume(
    api: ApiThread, http: httpx.Client, db: psycopg.Connection
) -> None:
    name = "clock_resume"
    add_job(db, name, status="PROCESSING", last_attempt=datetime.now(UTC) - timedelta(seconds=55))
    first = _one(api, name)
    eventually(lambda: len(first.events) == 1)
    assert first.of()[0]["data"]["data"]["processing_stage"] == "initializing", "projected before the boundary"
    version = first.last_id()
    # The clock alone moves the stage: an event with the same version.
    eventually(lambda: len(first.events) == 2, timeout=15)
    crossed = first.of()[1]
    assert (crossed["id"], crossed["data"]["data"]["processing_stage"]) == (version, "fetching_profile_data")
    # A client holding that version may have missed the crossing: it gets the current answer.
    resumed = _one(api, name, version)
    eventually(lambda: resumed.caught_up)
    assert [e["data"]["data"]["processing_stage"] for e in resumed.of()] == ["fetching_profile_data"]
    assert resumed.last_id() == version


def test_a_store_unreachable_at_the_start_is_a_503_like_a_poll(settings: Settings) -> None:
    down = ApiThread(settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})).start()
    try:
        with down.client() as http:
            for path in ("/api/profile/outage_user/status/stream", "/api/status/stream?usernames=outage_a,outage_b"):
                response = http.get(path)
                assert response.status_code == 503 and response.headers["retry-after"]
                assert response.json()["data"]["status"] == "ERROR"
    finally:
        down.stop()


def test_a_store_outage_ends_the_stream_with_status_error_not_error(settings: Settings, db: psycopg.Connection) -> None:
    server = EmbeddedRedis(port=free_port())
    server.start()
    ours = settings.model_copy(update={"redis_url": server.url})
    projector = ProjectorThread(ours).start()
    api = ApiThread(ours).start()
    try:
        add_job(db, "outage_a")
        add_job(db, "outage_b")
        with api.client() as http:
            eventually(lambda: _status(http, "outage_b")["status"] == "PENDING")
        listeners = [
            Listener(api.base_url, path)
            for path in ("/api/profile/outage_a/status/stream", "/api/status/stream?usernames=outage_a,outage_b")
        ]
        for listener in listeners:
            eventually(lambda listener=listener: listener.caught_up)
        server.stop()  # Redis goes away while the streams are open
        for listener in listeners:
            assert listener.ended.wait(15)
            kinds = [e["event"] for _, e in listener.events]
            assert kinds[-1] == "status_error" and "error" not in kinds, kinds  # never EventSource's own `error`
            assert listener.events[-1][1]["data"]["success"] is False
    finally:
        api.stop()
        projector.stop()
        server.stop()


# --------------------------------------------------------------------------- many usernames, one stream


def test_one_stream_follows_many_names_until_all_are_final(
    api: ApiThread, http: httpx.Client, db: psycopg.Connection
) -> None:
    add_job(db, "multi_a", status="PENDING")
    add_job(db, "Multi_B", status="PROCESSING", last_attempt=datetime.now(UTC))
    eventually(lambda: _status(http, "multi_b")["status"] == "PROCESSING")
    # Normalized like the GET; duplicates after normalization collapse.
    listener = _many(api, "Multi_A,multi_b,@MULTI_A,multi_c,multi_a")
    eventually(lambda: listener.caught_up)
    events = listener.of()
    assert [e["data"]["username"] for e in events] == ["multi_a", "multi_b", "multi_c"]
    for event in events:
        body = event["data"]
        assert set(body) == {"username", "success", "data"} and body["success"] is True
        assert _stable(body["data"]) == _stable(_status(http, body["username"]))
        assert cursor.decode(event["id"], ["multi_a", "multi_b", "multi_c"])  # a cursor for this list
    assert listener.statuses() == ["PENDING", "PROCESSING", "NOT_FOUND"]

    for name, finish in [("multi_a", "COMPLETED"), ("multi_b", "FAILED")]:
        db.execute(
            "UPDATE queue SET status = %s, attempts = 3, last_attempt = now() WHERE username ILIKE %s", (finish, name)
        )
        eventually(lambda name=name, finish=finish: listener.of()[-1]["data"]["username"] == name
                   and listener.statuses()[-1] == finish)
        assert not listener.ended.is_set(), "open while any name is not final"
    add_profile(db, "multi_c")
    assert listener.ended.wait(5)
    assert [e["data"]["username"] for e in listener.of()][-1] == "multi_c"
    assert listener.statuses()[-1] == "exists"


def test_fifty_names_after_collapsing_duplicates_are_one_stream(
    api: ApiThread, http: httpx.Client, settings: Settings
) -> None:
    names = [f"crowd_{i}" for i in range(50)]
    entries = names + [n.upper() for n in names[:10]]  # 60 entries, 50 names
    listener = _many(api, ",".join(entries))
    eventually(lambda: listener.caught_up)
    assert listener.status_code == 200
    assert sorted(e["data"]["username"] for e in listener.of()) == sorted(names)
    cursor_id = listener.last_id()
    assert len(cursor_id) < 400, cursor_id  # compact: 50 versions
    assert all(v is not None for v in cursor.decode(cursor_id, names))
    families = {f.name: f for f in text_string_to_metric_families(http.get("/metrics").text)}
    assert families["profile_status_api_sse_clients"].samples[0].value == 1, "one stream for 50 names"


@pytest.mark.parametrize(
    ("query", "detail"),
    [
        ("", "usernames is required"),
        ("usernames=", 'Username is required: entry 1 of usernames ("")'),
        ("usernames=ok_1,,ok_2", 'Username is required: entry 2 of usernames ("")'),
        ("usernames=ok_1,a%2Fb", 'Invalid characters in username: entry 2 of usernames ("a/b")'),
        ("usernames=ok_1,%20ok_2", 'Invalid characters in username: entry 2 of usernames (" ok_2")'),
        ("usernames=ok_1,@", 'Username is required: entry 2 of usernames ("@")'),
        ("usernames=" + "x" * 31, "Username too long (max 30 characters): entry 1 of usernames"),
        ("usernames=ok_1,m%C3%BCller", 'Invalid characters in username: entry 2 of usernames ("müller")'),
        ("usernames=" + ",".join(f"n{i}" for i in range(51)), 'Too many usernames (max 50): entry 51 of usernames ("n50")'),
        ("usernames=" + ",".join(f"n{i}" for i in range(50)) + ",N0,n51", 'entry 52 of usernames ("n51") is name 51'),
    ],
    ids=["missing", "empty", "empty-entry", "slash", "space", "only-at", "too-long", "non-ascii", "51", "51-after-dupes"],
)
def test_invalid_name_lists_get_400_naming_the_entry(http: httpx.Client, query: str, detail: str) -> None:
    response = http.get(f"/api/status/stream?{query}")
    assert response.status_code == 400
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["success"] is False and detail in body["detail"], body


def test_resuming_a_multiplexed_stream_sends_only_what_the_client_lacks(
    api: ApiThread, http: httpx.Client, db: psycopg.Connection
) -> None:
    names = ["mux_a", "mux_b", "mux_c"]
    for name in names:
        add_job(db, name, status="PENDING")
    eventually(lambda: all(_status(http, n)["status"] == "PENDING" for n in names))
    first = _many(api, ",".join(names))
    eventually(lambda: first.caught_up)
    held = first.last_id()
    first_cursor = first.of()[0]["id"]  # holds mux_a only

    nothing = _many(api, ",".join(names), held)
    eventually(lambda: nothing.caught_up)
    assert nothing.events == []

    db.execute("UPDATE queue SET status = 'PROCESSING', last_attempt = now() WHERE username = 'mux_b'")
    eventually(lambda: first.of()[-1]["data"]["username"] == "mux_b" and first.statuses()[-1] == "PROCESSING")
    eventually(lambda: nothing.statuses() == ["PROCESSING"])  # live: the change, and only it

    resumed = _many(api, ",".join(names), held)
    eventually(lambda: resumed.caught_up)
    assert [(e["data"]["username"], e["data"]["data"]["status"]) for e in resumed.of()] == [("mux_b", "PROCESSING")]
    assert cursor.decode(resumed.last_id(), names) == cursor.decode(first.last_id(), names)

    partial = _many(api, ",".join(names), first_cursor)  # disconnected after the first event
    eventually(lambda: partial.caught_up)
    assert [e["data"]["username"] for e in partial.of()] == ["mux_b", "mux_c"]


def test_a_cursor_not_made_for_this_list_resends_everything(
    api: ApiThread, http: httpx.Client, db: psycopg.Connection
) -> None:
    names = ["list_a", "list_b"]
    for name in names:
        add_job(db, name, status="PENDING")
    eventually(lambda: all(_status(http, n)["status"] == "PENDING" for n in names))
    held = _many_cursor(api, "list_a,list_b")
    tag, base, *deltas = held.split(".")
    not_ours = [
        _many_cursor(api, "list_b,list_a"),  # the same versions, for the list in another order
        _many_cursor(api, "list_a,list_b,list_c"),  # for a longer list
        f"{tag}.{base}.{deltas[0]}",  # a name short
        f"{tag}.{base}.{deltas[0]}.{deltas[1]}.0",  # a name too many
        f"{tag}.{base.upper()}.{deltas[0]}.{deltas[1]}",  # not base 36 as we write it
        f"{tag}..0.0",  # deltas without a base
        f"{tag}.{'z' * 40}.0.0",  # a version beyond any
        "",
        "garbage",
        "1234",
        held.replace(".", ","),
    ]
    for last_event_id in not_ours:
        resumed = _many(api, "list_a,list_b", last_event_id)
        eventually(lambda resumed=resumed: resumed.caught_up)
        assert [e["data"]["username"] for e in resumed.of()] == names, last_event_id


def _many_cursor(api: ApiThread, usernames: str) -> str:
    listener = _many(api, usernames)
    eventually(lambda: listener.caught_up)
    return listener.last_id()


def test_a_multiplexed_stream_holding_every_final_state_gets_204(
    api: ApiThread, http: httpx.Client, db: psycopg.Connection
) -> None:
    add_profile(db, "done_a")
    add_job(db, "done_b", status="COMPLETED")
    add_job(db, "done_c", status="PENDING")
    eventually(lambda: _status(http, "done_c")["status"] == "PENDING")
    first = _many(api, "done_a,done_b,done_c")
    eventually(lambda: first.caught_up)
    assert not first.ended.is_set()
    held_pending = first.last_id()
    db.execute("UPDATE queue SET status = 'COMPLETED' WHERE username = 'done_c'")
    assert first.ended.wait(5)
    url = "/api/status/stream?usernames=done_a,done_b,done_c"
    assert http.get(url, headers={"Last-Event-ID": first.last_id()}).status_code == 204
    # Holding an older version of one: that one, then the end.
    again = _many(api, "done_a,done_b,done_c", held_pending)
    assert again.ended.wait(5)
    assert [e["data"]["username"] for e in again.of()] == ["done_c"]


def test_a_multiplexed_stream_counts_once_against_the_cap(settings: Settings, db: psycopg.Connection) -> None:
    capped = ApiThread(settings.model_copy(update={"sse_max_streams": 1})).start()
    try:
        with capped.client() as http:
            many = _many(capped, "cap_a,cap_b,cap_c")
            eventually(lambda: many.caught_up)
            assert len(many.events) == 3
            refused = http.get("/api/status/stream?usernames=cap_d")
            assert refused.status_code == 503 and refused.headers["retry-after"]
            assert http.get("/api/profile/cap_e/status/stream").status_code == 503
    finally:
        capped.stop()
