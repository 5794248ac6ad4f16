"""Names several parts spell: defined once in contracts, and the copies that must stay separate (the
client installs without the rest of edgedistill) agree with them."""

from __future__ import annotations

from typing import get_args

from edgedistill import client
from edgedistill.contracts.events import JOB_EVENT_KINDS, STAGE_LABELS, STAGE_PROGRESS_END, STAGES, EventKind
from edgedistill.contracts.statuses import JOB_STATUSES, TERMINAL_STATUSES, JobStatus


def test_the_clients_terminal_statuses_are_the_contracts() -> None:
    assert client.TERMINAL == TERMINAL_STATUSES


def test_statuses_and_event_kinds() -> None:
    assert get_args(JobStatus) == JOB_STATUSES
    assert set(get_args(EventKind)) <= set(JOB_EVENT_KINDS) and {"status", "error"} <= set(JOB_EVENT_KINDS)


def test_every_stage_has_a_label_and_a_progress_end() -> None:
    assert set(STAGE_LABELS) == set(STAGES) == set(STAGE_PROGRESS_END)
    ends = [STAGE_PROGRESS_END[s] for s in STAGES]
    assert ends == sorted(ends) and ends[-1] == 100.0
