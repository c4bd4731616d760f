"""Portal: the program page's "Members and roles" section (governance.portal_memberships)."""

from __future__ import annotations

import pytest
from django.test import Client

from governance.actions.memberships import set_program_roles
from governance.models import AuditEvent, ProgramMembership
from governance.permissions import program_roles
from tests.governance.conftest import password

pytestmark = pytest.mark.django_db

PAGE = "/programs/support/"


def signed_in(user) -> Client:
    client = Client()
    assert client.login(username=user.get_username(), password=password(user))
    return client


def test_an_admin_grants_changes_and_removes_roles_on_the_program_page(program, users, admin):
    client, auditor = signed_in(admin), users["auditor"]
    page = client.get(PAGE).content.decode()
    assert 'id="members-h"' in page and 'id="add-member"' in page and "Save roles" in page

    added = client.post(f"{PAGE}members/", {"username": "auditor", "roles": ["auditor", "reviewer"],
                                            "reason": "QA lead"})
    assert added.status_code == 302 and added["Location"] == f"{PAGE}#members-h"
    assert program_roles(auditor, program) == {"auditor", "reviewer"}
    changed = client.post(f"{PAGE}members/auditor/roles/", {"roles": ["auditor"], "reason": "reads only"})
    assert changed.status_code == 302 and program_roles(auditor, program) == {"auditor"}
    assert "auditor now holds auditor on support." in client.get(PAGE).content.decode()
    assert client.post(f"{PAGE}members/auditor/remove/", {"reason": "project over"}).status_code == 302
    assert program_roles(auditor, program) is None
    assert list(AuditEvent.objects.filter(program=program, action__startswith="program.member")
                .values_list("action", "reason")) == [("program.member_added", "QA lead"),
                                                      ("program.member_roles_changed", "reads only"),
                                                      ("program.member_removed", "project over")]


def test_the_owner_adds_with_default_roles_and_never_chooses_roles(program, users, author):
    client = signed_in(author)
    page = client.get(PAGE).content.decode()
    assert 'id="add-member"' in page and "Save roles" not in page and "only administrators choose roles" in page
    client.post(f"{PAGE}members/", {"username": "outsider", "roles": ["reviewer"]})  # the ticked role is ignored
    assert program_roles(users["outsider"], program) == {"author", "reviewer", "releaser"}
    refused = client.post(f"{PAGE}members/outsider/roles/", {"roles": ["reviewer"]})
    assert refused.status_code == 403 and b"needs the administrator role to manage roles on program support" \
        in refused.content


def test_members_see_the_list_only_and_forced_posts_are_refused(program, users):
    client = signed_in(users["reviewer1"])
    page = client.get(PAGE).content.decode()
    assert 'id="member-releaser"' in page and 'id="add-member"' not in page and "Remove</button>" not in page
    refused = client.post(f"{PAGE}members/", {"username": "outsider"})
    assert refused.status_code == 403 and b"the owner of support or an administrator may add members" \
        in refused.content
    assert client.post(f"{PAGE}members/releaser/remove/", {}).status_code == 403
    assert signed_in(users["outsider"]).post(f"{PAGE}members/", {"username": "x"}).status_code == 404
    assert ProgramMembership.objects.filter(program=program).count() == 6


def test_bad_input_is_a_400_naming_the_field(program, admin):
    client = signed_in(admin)
    unknown = client.post(f"{PAGE}members/", {"username": "ghost"})
    assert unknown.status_code == 400 and b"user &#x27;ghost&#x27;" in unknown.content
    bad_role = client.post(f"{PAGE}members/", {"username": "auditor", "roles": ["admin"]})
    assert bad_role.status_code == 400 and b"elect a valid choice. admin is not one of the available choices" in bad_role.content
    assert not AuditEvent.objects.filter(action__startswith="program.member").exists()


def test_per_program_buttons_follow_the_roles_on_that_program(program, users, author, admin):
    client = signed_in(author)
    assert 'id="new-draft"' in client.get(PAGE).content.decode()
    set_program_roles(program, author, ["reviewer"], actor=admin, reason="reviews only now")
    page = client.get(PAGE).content.decode()
    assert 'id="new-draft"' not in page and "Upload a dataset" not in page
