"""Compare views: versions side by side on a registered dataset, read from the system's evaluations only.

The fake model answers each test row right or wrong as the version's instruction says ("RIGHT=0,1" = right on
rows 0 and 1 only), so every filter has known rows.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from governance import comparisons
from governance.actions import create_program, create_version, import_dataset, initial_payload
from governance.actions.evaluations import aligned_scores
from governance.evaluator import finish_pending
from governance.models import AuditEvent, Evaluation, EvaluationStatus
from optimizer import compare_paired
from tests.governance.conftest import FAKE_MODEL, TEST_ROWS, demo_spec, payload_with
from tests.optimizer.simulated import load_rows

ROWS = load_rows("test")[:TEST_ROWS]
TICKETS = {row["ticket"]: i for i, row in enumerate(ROWS)}


def by_instruction(prompt: str, request: dict) -> str:
    """Right on the rows the instruction lists after RIGHT=, a wrong label elsewhere; the judge's prompts get
    a verdict from comparing the expected and given answers."""
    if "Verdict:" in prompt:
        expected = prompt.split("Expected answer:\ncategory: ", 1)[1].split("\n", 1)[0]
        got = prompt.split("Program's answer:\ncategory: ", 1)[1].split("\n", 1)[0]
        return f" {'pass' if expected == got else 'fail'}\nReason: {got} against {expected}."
    first = prompt.split("\n", 1)[0]
    right = {int(i) for i in first.split("RIGHT=", 1)[1].split()[0].split(",") if i} if "RIGHT=" in first else set()
    ticket = prompt.rsplit("Ticket: ", 1)[1].rsplit("\nCategory:", 1)[0].strip()
    truth, index = ROWS[TICKETS[ticket]]["category"], TICKETS[ticket]
    return f" {truth}\n" if index in right else (" billing\n" if truth != "billing" else " refund\n")


@pytest.fixture
def graded(eval_lm_server, monkeypatch):
    monkeypatch.setattr(eval_lm_server, "responder", by_instruction)
    return eval_lm_server


@pytest.fixture
def two(program, author, graded):
    """v1 right on rows 0-3, v2 right on rows 2-5, both evaluated on the test dataset."""
    v1 = create_version(program, actor=author, payload=payload_with(program, "Classify. RIGHT=0,1,2,3"))
    v2 = create_version(program, actor=author, payload=payload_with(program, "Classify. RIGHT=2,3,4,5"))
    dataset = program.datasets.get()
    finish_pending(comparisons.request_missing(program, [v1, v2], dataset, actor=author))
    return v1, v2, dataset


def page_of(client, user, pw, url):
    assert client.login(username=user.get_username(), password=pw(user))
    return client.get(url)


def url(program, numbers, dataset, **extra):
    query = "&".join([*(f"versions={n}" for n in numbers), f"dataset={dataset.pk}",
                      *(f"{k}={v}" for k, v in extra.items())])
    return f"/programs/{program.slug}/compare/?{query}"


def test_rows_align_by_example_and_filters_pick_the_changes(program, two):
    v1, v2, dataset = two
    columns = comparisons.version_columns(program, [v1, v2], dataset)
    assert all(c.ready for c in columns)
    table = comparisons.compare(columns, dataset)
    assert [row.index for row in table.rows] == list(range(TEST_ROWS))
    assert [[cell.correct for cell in row.cells] for row in table.rows[:6]] == [
        [True, False], [True, False], [True, True], [True, True], [False, True], [False, True]]
    assert all(row.inputs["ticket"] == ROWS[row.index]["ticket"] for row in table.rows)
    assert all(row.expected == {"category": ROWS[row.index]["category"]} for row in table.rows)
    assert table.counts == {"all": 8, "newly_wrong": 2, "newly_right": 2, "both_wrong": 2}
    for show, rows in (("newly_wrong", [0, 1]), ("newly_right", [4, 5]), ("both_wrong", [6, 7])):
        assert [row.index for row in comparisons.compare(columns, dataset, show=show).rows] == rows
    raw = table.rows[0].cells[1].raw
    assert raw.strip() and raw.strip() != ROWS[0]["category"]  # the model's own answer, kept as it said it


def test_totals_are_the_evaluations_and_the_paired_figure_is_compare_paired(program, two):
    v1, v2, dataset = two
    table = comparisons.compare(comparisons.version_columns(program, [v1, v2], dataset), dataset)
    first, second = (c.evaluation for c in table.columns)
    assert (first.score, second.score) == (0.5, 0.5)
    expected = compare_paired(*aligned_scores(second, first))
    assert table.pairs[0].paired == expected and (expected.wins, expected.losses) == (2, 2)


def test_pages_and_constant_query_count(program, two):
    v1, v2, dataset = two
    columns = comparisons.version_columns(program, [v1, v2], dataset)
    second_page = comparisons.compare(columns, dataset, page=2, per_page=3)
    assert [row.index for row in second_page.rows] == [3, 4, 5] and second_page.page.paginator.num_pages == 3
    assert [row.index for row in comparisons.compare(columns, dataset, page="x", per_page=3).rows] == [0, 1, 2]
    counts = []
    for per_page in (1, 8):
        with CaptureQueriesContext(connection) as queries:
            comparisons.compare(comparisons.version_columns(program, [v1, v2], dataset), dataset, per_page=per_page)
        counts.append(len(queries))
    assert counts[0] == counts[1] <= 4


def test_compare_page_shows_the_table_filters_and_totals(client, users, pw, program, two, monkeypatch):
    v1, v2, dataset = two
    page = page_of(client, users["reviewer1"], pw, url(program, [1, 2], dataset, rows="newly_right"))
    html = page.content.decode()
    assert page.status_code == 200
    assert "Newly wrong (2)" in html and "Newly right (2)" in html and "Both wrong (2)" in html
    assert ROWS[4]["ticket"][:40] in html and ROWS[0]["ticket"][:40] not in html
    assert "v2 vs v1:" in html and "exact McNemar (one-sided)" in html and "50.0%" in html
    assert "raw output" in html
    monkeypatch.setattr(comparisons, "PER_PAGE", 3)
    counts = []
    for rows_page in (1, 3):
        with CaptureQueriesContext(connection) as queries:
            second = client.get(url(program, [1, 2], dataset, rows_page=rows_page))
        counts.append(len(queries))
    assert "Page 3 of 3 · examples 7–8 of 8" in second.content.decode()
    assert counts[0] == counts[1]


def test_missing_evaluations_are_requested_through_the_actions_and_the_page_says_so(client, users, pw, program,
                                                                                     two, graded):
    v1, _, dataset = two
    v3 = create_version(program, actor=users["author"], payload=payload_with(program, "Classify. RIGHT=7"))
    html = page_of(client, users["reviewer1"], pw, url(program, [1, 3], dataset)).content.decode()
    assert "v3</strong>: not evaluated on this dataset yet" in html and 'id="evaluate-missing"' in html
    before = AuditEvent.objects.count()
    answer = client.post(f"/programs/{program.slug}/compare/evaluate/",
                         {"versions": ["1", "3"], "dataset": str(dataset.pk)})
    assert answer.status_code == 302 and answer["Location"] == url(program, [1, 3], dataset)
    evaluation = Evaluation.objects.get(content_hash=v3.content_hash)
    assert evaluation.status == EvaluationStatus.QUEUED and evaluation.requested_by == users["reviewer1"]
    assert list(AuditEvent.objects.filter(pk__gt=before).values_list("action", flat=True)) == ["evaluation.requested"]
    waiting = client.get(answer["Location"]).content.decode()
    assert "Asked the system to evaluate v3" in waiting and "The system is evaluating v3 (0 of 8 examples)" in waiting
    finish_pending([evaluation])
    done = client.get(answer["Location"]).content.decode()
    assert "v3 vs v1:" in done and 'id="pending-evaluations"' not in done


def test_bad_picks_are_refused_naming_the_field(client, users, pw, program, two, outsider):
    _, _, dataset = two
    blank = page_of(client, users["reviewer1"], pw, f"/programs/{program.slug}/compare/")
    html = blank.content.decode()  # nothing picked: the newest version (no production yet) on the test dataset
    assert blank.status_code == 200 and "Side by side" not in html
    assert 'value="2" id="id_versions_1" checked' in html and 'value="1" id="id_versions_0" checked' not in html
    one = client.get(url(program, [1], dataset))
    assert one.status_code == 400 and "pick at least two versions to compare" in one.content.decode()
    unknown = client.get(url(program, [1, 9], dataset))
    assert unknown.status_code == 400 and "Select a valid choice. 9 is not one of the available choices." in \
        unknown.content.decode()
    bogus = client.get(url(program, [1, 2], dataset, rows="sideways"))
    assert bogus.status_code == 400 and "rows must be one of all, newly_wrong, newly_right, both_wrong" in \
        bogus.content.decode()
    assert Evaluation.objects.count() == 2
    client.logout()
    assert page_of(client, outsider, pw, url(program, [1, 2], dataset)).status_code == 404
    refused = client.post(f"/programs/{program.slug}/compare/evaluate/", {"versions": ["1", "2"],
                                                                        "dataset": str(dataset.pk)})
    assert refused.status_code == 404


def test_change_request_page_includes_the_aligned_comparison(client, users, pw, program, graded, make_cr,
                                                             make_approved, releaser):
    from governance.actions import release_version

    production = make_approved(version=create_version(program, actor=users["author"],
                                                      payload=payload_with(program, "Classify. RIGHT=0,1,2,3")))
    release_version(production, actor=releaser, reason="baseline")
    cr = make_cr(version=create_version(program, actor=users["author"],
                                        payload=payload_with(program, "Classify. RIGHT=2,3,4,5")))
    html = page_of(client, users["reviewer3"], pw, f"/change-requests/{cr.pk}/?rows=newly_wrong").content.decode()
    assert "Examples side by side" in html and "Newly wrong (2)" in html and "Newly right (2)" in html
    assert ROWS[0]["ticket"][:40] in html and ROWS[4]["ticket"][:40] not in html
    assert f"Candidate v{cr.version.number} vs Production v{production.number}:" in html
    link = f'/programs/{program.slug}/compare/?versions={production.number}&amp;versions={cr.version.number}' \
           f'&amp;dataset={cr.candidate_evaluation.dataset_id}'
    assert link in html
    assert f"p = {cr.comparison['p_value']:.3g}" in html  # the same figure the change request recorded


def test_judge_verdicts_and_reasons_are_stored_and_shown(client, users, pw, graded, monkeypatch):
    monkeypatch.setenv("OPTIMIZER_JUDGE_MODEL", FAKE_MODEL)
    monkeypatch.setenv("OPTIMIZER_JUDGE_API_BASE", graded.url)
    monkeypatch.setenv("OPTIMIZER_JUDGE_API_KEY", "x")
    judged = create_program(actor=users["author"], slug="judged", name="Judged", spec=demo_spec(), metric="judge",
                            lm_config={"model": FAKE_MODEL, "api_base": graded.url}, members=[users["reviewer1"]])
    dataset = import_dataset(judged, actor=users["author"], split="test", name="t", rows=ROWS[:4])
    versions = [create_version(judged, actor=users["author"], payload=payload_with(judged, f"Go. RIGHT={rows}"))
                for rows in ("0,1", "1,2")]
    finish_pending(comparisons.request_missing(judged, versions, dataset, actor=users["author"]))
    evaluation = Evaluation.objects.get(content_hash=versions[0].content_hash)
    assert evaluation.status == EvaluationStatus.SUCCEEDED and evaluation.score == 0.5
    assert evaluation.calls == 8  # 4 answers and 4 verdicts: the judge's calls count as the evaluation's
    assert evaluation.prompt_tokens > 0 and evaluation.completion_tokens > 0
    first = evaluation.results.get(index=0)
    assert first.feedback == {"verdict": "pass", "reason": f"{ROWS[0]['category']} against {ROWS[0]['category']}."}
    html = page_of(client, users["reviewer1"], pw, url(judged, [1, 2], dataset)).content.decode()
    assert "judge: <strong>fail</strong>" in html and "judge: <strong>pass</strong>" in html


# --- API ------------------------------------------------------------------------------------------------------


def test_api_answers_the_comparison_and_requests_missing_evaluations(client, users, pw, program, two, graded):
    v1, v2, dataset = two
    client.login(username="reviewer1", password=pw(users["reviewer1"]))
    api = f"/api/v1/programs/{program.slug}/compare"
    body = client.get(f"{api}?versions=1&versions=2&dataset={dataset.pk}&rows=newly_wrong").json()
    assert body["ready"] and body["counts"] == {"all": 8, "newly_wrong": 2, "newly_right": 2, "both_wrong": 2}
    assert [row["index"] for row in body["rows"]] == [0, 1]
    assert [c["score"] for c in body["columns"]] == [0.5, 0.5] and body["pairs"][0]["paired"]["wins"] == 2
    assert [cell["correct"] for cell in body["rows"][0]["cells"]] == [True, False]
    create_version(program, actor=users["author"], payload=payload_with(program, "Classify. RIGHT=1"))
    asked = client.post(api, {"versions": [1, 3], "dataset": dataset.pk}, content_type="application/json")
    assert asked.status_code == 202 and not asked.json()["ready"]
    assert asked.json()["columns"][1]["status"] == "queued"
    for query, field in (("versions=1&dataset=%d", "versions"), ("versions=1&versions=7&dataset=%d", "versions"),
                         ("versions=1&versions=2&dataset=999", "dataset"), ("versions=1&versions=2&dataset=%d&rows=x",
                                                                             "rows")):
        refused = client.get(f"{api}?{query.replace('%d', str(dataset.pk))}")
        assert refused.status_code == 400 and field in str(refused.json()), query
    client.logout()
    client.login(username="outsider", password=pw(users["outsider"]))
    assert client.get(f"{api}?versions=1&versions=2&dataset={dataset.pk}").status_code == 404


# --- figures: each names its dataset, size and source -------------------------------------------------------


@pytest.fixture
def stopped_run(program, author, graded):
    """A run planned for 5 trials that stopped after 3 (two scored on all 20 validation rows), whose proposal's
    change request was evaluated by the system."""
    from governance.actions.runs import Proposal, claim_run, complete_run, record_trial, start_run
    from optimizer.lm import Usage
    from optimizer.search import TrialRecord
    from tests.governance.conftest import evaluate

    for split, size in (("train", 40), ("val", 20)):
        import_dataset(program, actor=author, split=split, name=f"{split} slice", rows=load_rows(split)[:size])
    run = start_run(program, actor=author, num_trials=5, enqueue=False)
    claim_run(run.pk, worker="w", stale_after=60)
    usage = Usage(calls=1, cached_calls=0, prompt_tokens=1, completion_tokens=1, cost_usd=0.0, seconds_in_lm=0.1)
    best = None
    for number, (score, full) in enumerate([(0.55, True), (0.2, False), (0.9, True)]):
        best = score if full and (best is None or score > best) else best
        record_trial(run.pk, TrialRecord(number=number, params={}, state="complete", score=score,
                                         examples=20 if full else 5, full_score=score if full else None,
                                         is_full=full, calls=1, cached_calls=0, tokens=2, cost_usd=0.0, seconds=0.1,
                                         best_score=best), worker="w", usage=usage, owner=True)
    proposal = Proposal(payload=payload_with(program, "Classify. RIGHT=0,1,2"), scores={}, evaluation={},
                        candidates={}, stop_reason="no better full-validation score in 2 trials", production_id=None,
                        title="Optimized", description="")
    cr = evaluate(complete_run(run, worker="w", proposal=proposal, usage=usage))
    run.refresh_from_db()
    return run, cr


def test_run_and_version_pages_name_each_figures_dataset_size_and_source(client, users, pw, stopped_run):
    run, cr = stopped_run
    val = run.program.datasets.get(split="val")
    page = page_of(client, users["author"], pw, f"/runs/{run.pk}/").content.decode()
    assert "3 of 5 planned trials: the search stopped early" in page and "100%" not in page.split("trials-label")[1][:200]
    assert f"90.0% <span class=\"small muted\" id=\"stat-best-rows\">on 20 of 20 validation rows of dataset val slice " \
           f"(#{val.pk})" in page
    assert "full validation (20 rows)" in page
    version = page_of(client, users["author"], pw,
                      f"/programs/{run.program.slug}/versions/{cr.version.number}/").content.decode()
    evaluation = cr.candidate_evaluation
    assert "Val score" not in version
    assert f"37.5% <span class=\"small muted\">on 8 rows of dataset test slice (#{evaluation.dataset_id}) · choice" in version
    assert f"system evaluation #{evaluation.pk}" in version
    review = client.get(f"/change-requests/{cr.pk}/").content.decode()
    assert f"dataset test slice (#{evaluation.dataset_id}, test split, 8 rows)" in review


def test_long_text_folds_behind_a_summary_and_shows_in_full(rf, program, two):
    from django.template.loader import render_to_string

    v1, v2, dataset = two
    table = comparisons.compare(comparisons.version_columns(program, [v1, v2], dataset), dataset)
    long = "word " * 40
    cell = comparisons.Cell({"category": long}, raw="raw " + long, score=0.0, error="", feedback={})
    table.rows = [comparisons.Row(0, "both_wrong", {"ticket": long}, {"category": long}, [cell, cell])]
    html = render_to_string("governance/_comparison.html", {"comparison": table, "request": rf.get("/"),
                                                            "program": program})
    # input, expected and both answers fold behind a summary; both raw outputs too; the full text is there
    assert html.count("<details><summary>") == 6 and long.strip() in html


def test_program_page_scores_come_from_the_evaluations_on_the_test_dataset(client, users, pw, program, two):
    v1, v2, dataset = two
    evaluation = Evaluation.objects.get(content_hash=v2.content_hash)
    html = page_of(client, users["reviewer1"], pw, f"/programs/{program.slug}/").content.decode()
    assert f'Test score <span class="small muted">({TEST_ROWS} rows)</span>' in html and ">Val<" not in html
    assert f'title="system evaluation #{evaluation.pk} on dataset {dataset.name} (#{dataset.pk}, 8 rows)">50.0%' in html


def test_a_comparison_can_score_with_the_lm_judge_instead_of_the_programs_metric(client, users, pw, program, two,
                                                                                  graded, monkeypatch):
    monkeypatch.setenv("OPTIMIZER_JUDGE_MODEL", FAKE_MODEL)
    monkeypatch.setenv("OPTIMIZER_JUDGE_API_BASE", graded.url)
    monkeypatch.setenv("OPTIMIZER_JUDGE_API_KEY", "x")
    v1, v2, dataset = two
    client.login(username="reviewer1", password=pw(users["reviewer1"]))
    refused = client.post(f"/programs/{program.slug}/compare/evaluate/",
                          {"versions": ["1", "2"], "dataset": str(dataset.pk), "metric": "os:system"})
    assert refused.status_code == 400 and "Select a valid choice. os:system is not one of the available choices." \
        in refused.content.decode()
    api = client.get(f"/api/v1/programs/{program.slug}/compare?versions=1&versions=2&dataset={dataset.pk}"
                     "&metric=os:system")
    assert api.status_code == 400 and api.json()["field"] == "metric"
    asked = client.post(f"/programs/{program.slug}/compare/evaluate/",
                        {"versions": ["1", "2"], "dataset": str(dataset.pk), "metric": "judge"})
    assert asked.status_code == 302 and asked["Location"].endswith("&metric=judge")
    judged = list(Evaluation.objects.filter(metric="judge"))
    assert len(judged) == 2 and program.metric == "choice"  # the program's own evaluations stay as they were
    finish_pending(judged)
    html = client.get(asked["Location"]).content.decode()
    assert "judge: <strong>pass</strong>" in html and "judge: <strong>fail</strong>" in html
    assert "text-completion-openai/fake</code> · <code>judge</code>" in html
    body = client.get(f"/api/v1/programs/{program.slug}/compare?versions=1&versions=2&dataset={dataset.pk}"
                      "&metric=judge").json()
    assert body["metric"] == "judge" and body["rows"][0]["cells"][0]["feedback"]["verdict"] == "pass"


def test_a_first_version_equal_to_the_spec_shares_its_baselines_evaluation(client, users, pw, program, make_cr):
    """Nothing released yet and the candidate's content is the program spec: both columns are one evaluation
    (reused by content). The page shows it in both columns, all examples "both right" or "both wrong"."""
    cr = make_cr(version=create_version(program, actor=users["author"], payload=initial_payload(program)))
    assert cr.candidate_evaluation_id == cr.baseline_evaluation_id
    response = page_of(client, users["reviewer3"], pw, f"/change-requests/{cr.pk}/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Examples side by side" in html and "Newly wrong (0)" in html and "Newly right (0)" in html
