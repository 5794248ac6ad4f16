"""The SSE stream reads job_events in order, resumes after Last-Event-ID, and ends after a terminal status."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from edgedistill.service.repos import events, jobs


def _read(client: TestClient, url: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    """Parse the whole stream (it must end by itself for this to return)."""
    out: list[dict[str, Any]] = []
    with client.stream("GET", url, headers=headers) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        current: dict[str, Any] = {}
        for line in r.iter_lines():
            if line.startswith("id: "):
                current["id"] = line[4:]
            elif line.startswith("event: "):
                current["event"] = line[7:]
            elif line.startswith("data: "):
                current["data"] = json.loads(line[6:])
            elif line == "" and "data" in current:
                out.append(current)
                current = {}
    return out


def _run_job(app: FastAPI, job_id: str) -> None:
    with app.state.sessionmaker() as s:
        jobs.claim_job(s, job_id=job_id, worker_id="w")
        events.append_event(s, job_id=job_id, kind="stage_started", stage="distill", data={"progress": 10})
        events.append_event(
            s, job_id=job_id, kind="epoch", stage="distill", data={"epoch": 1, "epochs": 2, "val_fidelity": 0.8}
        )
        jobs.finish_job(s, job_id=job_id, status="succeeded")
        s.commit()


def test_stream_replays_everything_and_ends(client: TestClient, app: FastAPI, alice, submit) -> None:  # type: ignore[no-untyped-def]
    job = submit(alice)
    _run_job(app, job["id"])
    got = _read(client, f"/api/v1/jobs/{job['id']}/events", alice.headers)
    assert [e["event"] for e in got] == ["status", "status", "stage_started", "epoch", "status"]
    assert [e["data"].get("status") for e in got if e["event"] == "status"] == ["queued", "running", "succeeded"]
    ids = [int(e["id"]) for e in got]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert got[2]["data"]["progress"] == 10 and got[2]["data"]["stage"] == "distill"
    assert got[3]["data"]["data"]["val_fidelity"] == 0.8

    # Resume after the second event: only what came later.
    later = _read(client, f"/api/v1/jobs/{job['id']}/events", {**alice.headers, "Last-Event-ID": got[1]["id"]})
    assert [e["id"] for e in later] == [e["id"] for e in got[2:]]


def test_stream_follows_a_live_job(client: TestClient, app: FastAPI, alice, submit) -> None:  # type: ignore[no-untyped-def]
    job = submit(alice)

    def worker() -> None:
        time.sleep(0.2)
        _run_job(app, job["id"])

    t = threading.Thread(target=worker)
    t.start()
    started = time.monotonic()
    got = _read(client, f"/api/v1/jobs/{job['id']}/events", alice.headers)
    t.join()
    assert time.monotonic() - started >= 0.2
    assert got[-1]["data"]["status"] == "succeeded" and len(got) == 5


def test_stream_of_an_ended_job_with_nothing_new_closes(client: TestClient, app: FastAPI, alice, submit) -> None:  # type: ignore[no-untyped-def]
    job = submit(alice)
    client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=alice.headers)
    all_events = _read(client, f"/api/v1/jobs/{job['id']}/events", alice.headers)
    assert all_events[-1]["data"]["status"] == "cancelled"
    assert _read(client, f"/api/v1/jobs/{job['id']}/events?after={all_events[-1]['id']}", alice.headers) == []


def test_cursors_past_any_event_id_are_4xx(client: TestClient, alice, submit) -> None:  # type: ignore[no-untyped-def]
    job = submit(alice)
    url = f"/api/v1/jobs/{job['id']}/events"
    for value in (str(2**63), "9" * 5000):
        r = client.get(url, headers={**alice.headers, "Last-Event-ID": value})
        assert r.status_code == 400 and "Last-Event-ID" in r.json()["detail"], value
        r = client.get(f"{url}?after={value}", headers=alice.headers)
        assert r.status_code == 422, value
    # an id this server never issued is ignored, as the SSE spec allows (cancelled: the stream ends)
    assert client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=alice.headers).status_code == 200
    assert client.get(url, headers={**alice.headers, "Last-Event-ID": "abc"}).status_code == 200
