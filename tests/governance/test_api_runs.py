"""API: optimization runs (start, cancel, progress) and their trials (nested under the run, and filterable)."""

from __future__ import annotations

import pytest

from governance.models import AuditEvent, RunStatus
from optimizer.lm import Usage
from optimizer.search import TrialRecord
from tests.governance.api_support import V1, error, results

pytest_plugins = ["tests.governance.api_fixtures"]

pytestmark = pytest.mark.django_db

ROWS = [{"ticket": f"ticket {i}", "category": c} for i, c in enumerate(["billing", "refund", "shipping"] * 3)]


@pytest.fixture
def trained(program, author):
    from governance.actions import import_dataset

    import_dataset(program, actor=author, split="train", name="train", rows=ROWS)
    return program


def _trial(number: int, *, full: bool = False, score: float = 0.5, state: str = "complete") -> TrialRecord:
    return TrialRecord(number=number, params={"classify.instruction": number % 3}, state=state, score=score,
                       examples=10, full_score=score if full else None, is_full=full, calls=10, cached_calls=0,
                       tokens=500, cost_usd=0.0, seconds=0.1, best_score=score)


def _record_trials(run, count: int) -> None:
    """Trials as the runner reports them (through the run actions), on a claimed run."""
    from governance.actions.runs import claim_run, record_trial

    claim_run(run.pk, worker="test-worker", stale_after=60)
    usage = Usage(calls=10, cached_calls=0, prompt_tokens=400, completion_tokens=100, cost_usd=0.0,
                  seconds_in_lm=0.5)
    for number in range(count):
        record_trial(run.pk, _trial(number, full=number % 4 == 3, score=number / 10), worker="test-worker",
                     usage=usage, owner=True)


def test_start_run_queues_it(api, trained, author):
    response = api(author).post(f"{V1}/runs/", {"program": "support", "preset": "light", "seed": 7,
                                                 "max_calls": 500, "num_trials": 6}, format="json")
    assert response.status_code == 201, response.content
    run = response.json()
    assert (run["status"], run["config"]["seed"], run["config"]["num_trials"], run["started_by"]["username"]) == (
        RunStatus.QUEUED, 7, 6, "author")
    assert AuditEvent.objects.filter(action="run.started", object_id=str(run["id"])).count() == 1
    progress = api(author).get(f"{V1}/runs/{run['id']}/progress/").json()
    assert (progress["status"], progress["trials_recorded"], progress["progress"]["trials_planned"]) == ("queued", 0, 6)


def test_start_run_refusals(api, program, trained, author, reviewer1, outsider):
    no_budget = api(author).post(f"{V1}/runs/", {"program": "support", "max_calls": 0}, format="json")
    assert no_budget.status_code == 400 and no_budget.json()["field"] == "max_calls"
    preset = api(author).post(f"{V1}/runs/", {"program": "support", "preset": "turbo"}, format="json")
    assert preset.json()["field"] == "preset"
    huge_seed = api(author).post(f"{V1}/runs/", {"program": "support", "seed": 10**30}, format="json")
    assert huge_seed.status_code == 400 and huge_seed.json()["field"] == "seed"
    assert error(api(reviewer1).post(f"{V1}/runs/", {"program": "support"}, format="json")) == {
        "status": 403, "code": "permission_denied",
        "detail": "user 'reviewer1' needs the author role to start optimization runs on program support"}
    assert api(outsider).post(f"{V1}/runs/", {"program": "support"}, format="json").json()["field"] == "program"


def test_start_run_without_train_data_is_400(api, program, author):
    response = api(author).post(f"{V1}/runs/", {"program": "support"}, format="json")
    assert error(response) == {
        "status": 400, "code": "invalid", "field": "datasets",
        "detail": "program support has no train dataset; import one before optimizing",
        "errors": {"datasets": ["program support has no train dataset; import one before optimizing"]}}


def test_cancel(api, trained, author, outsider):
    run = api(author).post(f"{V1}/runs/", {"program": "support"}, format="json").json()
    assert api(outsider).post(f"{V1}/runs/{run['id']}/cancel/", {}, format="json").status_code == 404
    cancelled = api(author).post(f"{V1}/runs/{run['id']}/cancel/", {"reason": "wrong data"}, format="json")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == RunStatus.CANCELLED
    again = api(author).post(f"{V1}/runs/{run['id']}/cancel/", {}, format="json")
    assert error(again) == {"status": 409, "code": "illegal_transition",
                            "detail": f"run {run['id']} is cancelled; only queued or running runs can be cancelled"}


def test_trials_nested_and_filterable_with_pinned_queries(api, trained, author, outsider,
                                                          django_assert_max_num_queries):
    from governance.actions.runs import start_run

    run = start_run(trained, actor=author, enqueue=False)
    _record_trials(run, 12)
    client = api(author)
    with django_assert_max_num_queries(5):
        nested = results(client.get(f"{V1}/runs/{run.pk}/trials/"))
    assert [t["number"] for t in nested] == list(range(12))
    full = results(client.get(f"{V1}/runs/{run.pk}/trials/?kind=full"))
    assert [t["number"] for t in full] == [3, 7, 11]
    best = results(client.get(f"{V1}/trials/?run={run.pk}&score_min=0.9"))
    assert [t["number"] for t in best] == [9, 10, 11]
    assert client.get(f"{V1}/runs/{run.pk}/trials/?kind=bogus").json()["field"] == "kind"
    with django_assert_max_num_queries(4):
        assert len(results(client.get(f"{V1}/trials/?program=support"))) == 12
    with django_assert_max_num_queries(4):
        assert len(results(client.get(f"{V1}/runs/?program=support"))) == 1
    progress = client.get(f"{V1}/runs/{run.pk}/progress/").json()
    assert (progress["status"], progress["trials_recorded"], progress["calls"]) == ("running", 12, 120)
    assert results(api(outsider).get(f"{V1}/trials/")) == []
    assert api(outsider).get(f"{V1}/runs/{run.pk}/trials/").status_code == 404
