"""API: programs (list, detail, create, update, members) as the right and the wrong user."""

from __future__ import annotations

import pytest

from governance.models import AuditEvent, Program
from tests.governance.api_support import V1, error, results
from tests.governance.conftest import demo_spec

pytest_plugins = ["tests.governance.api_fixtures"]

pytestmark = pytest.mark.django_db


def test_anonymous_gets_403(api, program):
    assert error(api().get(f"{V1}/programs/")) == {
        "status": 403, "code": "not_authenticated", "detail": "Authentication credentials were not provided."}


def test_members_see_the_program_outsiders_get_404(api, program, author, reviewer1, outsider, auditor):
    assert [p["slug"] for p in results(api(reviewer1).get(f"{V1}/programs/"))] == ["support"]
    assert results(api(outsider).get(f"{V1}/programs/")) == []
    assert error(api(outsider).get(f"{V1}/programs/support/")) == {
        "status": 404, "code": "not_found", "detail": "Not found."}
    detail = api(auditor).get(f"{V1}/programs/support/").json()  # auditors read every program
    assert detail["owner"] == {"id": author.pk, "username": "author", "name": "Author Example"}
    assert sorted(detail["members"]) == ["author", "author2", "releaser", "reviewer1", "reviewer2", "reviewer3"]


def test_create_program_through_the_action(api, users):
    response = api(users["author2"]).post(f"{V1}/programs/", {
        "slug": "triage2", "name": "Triage two", "spec": demo_spec(), "members": ["reviewer1"]}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["owner"]["username"] == "author2"
    assert sorted(response.json()["members"]) == ["author2", "reviewer1"]
    event = AuditEvent.objects.filter(action="program.created").last()
    assert (event.actor, event.object_id) == (users["author2"], str(Program.objects.get(slug="triage2").pk))


def test_create_program_refusals(api, users, program):
    assert error(api(users["reviewer1"]).post(f"{V1}/programs/", {
        "slug": "x", "name": "X", "spec": demo_spec()}, format="json")) == {
        "status": 403, "code": "permission_denied",
        "detail": "user 'reviewer1' needs the author role to create a program"}
    bad_spec = api(users["author"]).post(f"{V1}/programs/", {"slug": "x", "name": "X", "spec": {"predictors": 3}},
                                         format="json")
    assert bad_spec.status_code == 400 and bad_spec.json()["field"] == "spec"
    assert bad_spec.json()["detail"].startswith("spec is not a valid program")
    taken = api(users["author"]).post(f"{V1}/programs/", {"slug": "support", "name": "X", "spec": demo_spec()},
                                      format="json")
    assert error(taken) == {"status": 400, "code": "invalid", "field": "slug",
                            "detail": "a program with slug 'support' already exists",
                            "errors": {"slug": ["a program with slug 'support' already exists"]}}
    missing = api(users["author"]).post(f"{V1}/programs/", {"slug": "y"}, format="json")
    assert missing.status_code == 400
    assert set(missing.json()["errors"]) == {"name", "spec"}
    assert missing.json()["field"] == "name" and missing.json()["detail"] == "name: This field is required."


def test_update_by_owner_and_refusals(api, program, author, reviewer1, outsider):
    response = api(author).patch(f"{V1}/programs/support/", {"name": "Support triage v2", "reason": "rename"},
                                 format="json")
    assert response.status_code == 200 and response.json()["name"] == "Support triage v2"
    event = AuditEvent.objects.filter(action="program.updated").last()
    assert (event.reason, event.after["name"]) == ("rename", "Support triage v2")
    assert error(api(reviewer1).patch(f"{V1}/programs/support/", {"name": "n"}, format="json")) == {
        "status": 403, "code": "permission_denied", "detail": "only the owner of support or an administrator may change it"}
    assert api(outsider).patch(f"{V1}/programs/support/", {"name": "n"}, format="json").status_code == 404
    nothing = api(author).patch(f"{V1}/programs/support/", {}, format="json")
    assert error(nothing) == {"status": 400, "code": "invalid", "detail": "nothing to change on program support"}
    assert api(author).patch(f"{V1}/programs/support/", {"drift_threshold": "many"},
                             format="json").json()["field"] == "drift_threshold"
    assert api(author).put(f"{V1}/programs/support/", {}, format="json").status_code == 405


def test_members_add_and_remove(api, program, author, users, reviewer1):
    added = api(author).post(f"{V1}/programs/support/members/", {"username": "auditor", "reason": "audit"},
                             format="json")
    assert added.status_code == 200 and "auditor" in added.json()["members"]
    again = api(author).post(f"{V1}/programs/support/members/", {"username": "auditor"}, format="json")
    assert error(again) == {"status": 409, "code": "illegal_transition",
                            "detail": "user 'auditor' is already a member of support"}
    assert api(author).post(f"{V1}/programs/support/members/", {"username": "nobody"},
                            format="json").json()["field"] == "username"
    assert api(reviewer1).post(f"{V1}/programs/support/members/", {"username": "outsider"},
                               format="json").status_code == 403
    removed = api(author).delete(f"{V1}/programs/support/members/auditor/", {"reason": "done"}, format="json")
    assert removed.status_code == 204
    assert not program.members.filter(username="auditor").exists()
    assert AuditEvent.objects.filter(action="program.member_removed").last().reason == "done"
    assert error(api(author).delete(f"{V1}/programs/support/members/author/")) == {
        "status": 409, "code": "illegal_transition", "detail": "user 'author' owns support and cannot be removed"}
    assert api(author).delete(f"{V1}/programs/support/members/ghost/").status_code == 404


def test_program_list_query_count_is_pinned(api, users, django_assert_max_num_queries):
    from governance.actions import create_program

    for i in range(8):
        create_program(actor=users["author"], slug=f"p{i}", name=f"P{i}", spec=demo_spec(),
                       members=[users["reviewer1"], users["reviewer2"]])
    client = api(users["reviewer1"])
    with django_assert_max_num_queries(5):  # roles, count, page, members prefetch (+ visibility subquery inline)
        assert len(results(client.get(f"{V1}/programs/"))) == 8


def test_program_filters(api, program, users):
    client = api(users["admin"])
    assert [p["slug"] for p in results(client.get(f"{V1}/programs/?member=reviewer1"))] == ["support"]
    assert results(client.get(f"{V1}/programs/?owner=author2")) == []
    assert [p["slug"] for p in results(client.get(f"{V1}/programs/?name=triage"))] == ["support"]
