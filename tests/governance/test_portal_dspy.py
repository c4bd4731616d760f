"""The portal's DSPy doors: "Import DSPy file" on the program page, "Export DSPy JSON" on approved versions.

Files are written by the real dspy package in the test; the downloaded export is loaded back into dspy.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from governance.models import AuditEvent, PromptVersion, VersionOrigin
from tests.governance.conftest import FAKE_MODEL

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # litellm must not fetch its cost map
dspy = pytest.importorskip("dspy")

pytestmark = pytest.mark.django_db

IMPORT_URL = "/programs/support/import-dspy/"


def login(client: Any, user: Any, pw: Any) -> Any:
    assert client.login(username=user.get_username(), password=pw(user))
    return client


def dspy_file(tmp_path: Path, signature: str = "ticket -> category") -> SimpleUploadedFile:
    module = dspy.Predict(signature)
    module.signature = module.signature.with_instructions("Route the ticket.")
    module.lm = dspy.LM(FAKE_MODEL, model_type="text", temperature=0.0, max_tokens=64)
    module.save(tmp_path / "program.json")
    return SimpleUploadedFile("program.json", (tmp_path / "program.json").read_bytes(),
                              content_type="application/json")


def test_authors_see_the_import_form_and_reviewers_do_not(client, program, author, reviewer1, pw):
    page = login(client, author, pw).get("/programs/support/").content.decode()
    assert "Import DSPy file" in page and f'action="{IMPORT_URL}"' in page and 'enctype="multipart/form-data"' in page
    client.logout()
    assert "Import DSPy file" not in login(client, reviewer1, pw).get("/programs/support/").content.decode()


def test_an_imported_file_becomes_a_draft_and_the_page_goes_to_it(client, tmp_path, program, author, pw):
    response = login(client, author, pw).post(IMPORT_URL, {"file": dspy_file(tmp_path), "note": "from a notebook"})

    version = PromptVersion.objects.get(program=program)
    assert response.status_code == 302 and response["Location"] == f"/programs/support/versions/{version.number}/"
    assert (version.origin, version.status, version.note) == (VersionOrigin.DSPY_IMPORT, "draft", "from a notebook")
    assert version.payload["program"]["predictors"][0]["signature"]["instructions"] == "Route the ticket."
    assert AuditEvent.objects.filter(action="version.dspy_imported", object_id=str(version.pk)).count() == 1


def test_a_file_for_other_fields_comes_back_on_the_form_naming_them(client, tmp_path, program, author, pw):
    response = login(client, author, pw).post(IMPORT_URL, {"file": dspy_file(tmp_path, "question -> answer")})

    page = response.content.decode()
    assert response.status_code == 400
    assert 'id="dspy_file_error"' in page
    assert ("dspy predictor &#x27;self&#x27; was written for fields question, answer, but predictor "
            "&#x27;classify&#x27; has fields ticket, category") in page
    assert not PromptVersion.objects.filter(program=program).exists()


def test_a_pickle_and_a_missing_file_are_form_errors(client, program, author, pw):
    client = login(client, author, pw)
    pickle = client.post(IMPORT_URL, {"file": SimpleUploadedFile("program.pkl", b"\x80\x05\x95 pickled")})
    missing = client.post(IMPORT_URL, {})

    assert pickle.status_code == 400 and "is a pickle (dspy&#x27;s .pkl format)" in pickle.content.decode()
    assert missing.status_code == 400 and "This field is required." in missing.content.decode()
    assert not PromptVersion.objects.filter(program=program).exists()


def test_a_reviewer_forcing_an_import_gets_403(client, tmp_path, program, reviewer1, pw):
    response = login(client, reviewer1, pw).post(IMPORT_URL, {"file": dspy_file(tmp_path)})

    assert response.status_code == 403
    assert "needs the author role to create prompt versions" in response.content.decode()


def test_an_approved_version_downloads_as_dspy_json_that_dspy_loads(client, program, make_approved, reviewer1,
                                                                   tmp_path, pw):
    approved = make_approved()
    client = login(client, reviewer1, pw)
    page = client.get(f"/programs/support/versions/{approved.number}/").content.decode()
    assert "Export DSPy JSON" in page

    download = client.post(f"/programs/support/versions/{approved.number}/export-dspy/", {"layout": "auto"})

    assert download.status_code == 200
    assert download["Content-Disposition"] == f'attachment; filename="support-v{approved.number}.dspy.json"'
    (tmp_path / "v.json").write_bytes(download.content)
    bare = dspy.Predict("ticket -> category")
    bare.load(tmp_path / "v.json")
    spec = approved.payload["program"]["predictors"][0]["signature"]
    assert bare.signature.instructions == spec["instructions"]
    assert bare.lm.model == approved.payload["lm"]["model"]
    assert json.loads(download.content)["signature"]["fields"][1]["prefix"] == spec["outputs"][0]["prefix"]
    module = client.post(f"/programs/support/versions/{approved.number}/export-dspy/", {"layout": "module"})
    assert set(json.loads(module.content)) == {"classify", "metadata"}
    bogus = client.post(f"/programs/support/versions/{approved.number}/export-dspy/", {"layout": "flat"})
    assert bogus.status_code == 400 and "layout must be one of auto, bare, module" in bogus.content.decode().lower()


def test_a_draft_offers_no_dspy_export_and_a_forced_one_is_409(client, program, make_version, author, pw):
    draft = make_version()
    client = login(client, author, pw)

    assert "Export DSPy JSON" not in client.get(f"/programs/support/versions/{draft.number}/").content.decode()
    forced = client.post(f"/programs/support/versions/{draft.number}/export-dspy/")
    assert forced.status_code == 409
    assert "only approved versions can be exported" in forced.content.decode()
