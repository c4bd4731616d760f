"""DSPy files in and out of governed programs: the actions, the API endpoints and `manage.py import_dspy`.

Every file is written by the real dspy package in the test; a governed round trip (import as a draft, review,
approve, export) must give dspy back the module it saved (`dump_state()` equality).
"""

from __future__ import annotations

import copy
import json
import re
import os
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command

from governance.actions import dspy_files as dspy_actions
from governance.errors import IllegalTransition, InvalidInput, PermissionDenied
from governance.models import AuditEvent, Program, PromptVersion, VersionOrigin
from tests.governance.api_support import V1, error
from tests.governance.conftest import FAKE_MODEL

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # litellm must not fetch its cost map
dspy = pytest.importorskip("dspy")

pytest_plugins = ["tests.governance.api_fixtures"]
pytestmark = pytest.mark.django_db

INSTRUCTIONS = "Route the support ticket to one team: billing, refund, shipping, account, technical."


def tuned_predict(*, with_lm: bool = True) -> Any:
    """The program "support" (ticket -> category) as a tuned bare dspy.Predict, optionally with an lm block."""
    module = dspy.Predict("ticket -> category")
    module.signature = (module.signature.with_instructions(INSTRUCTIONS)
                        .with_updated_fields("ticket", desc="The customer's message.")
                        .with_updated_fields("category", desc="The team that should handle the ticket."))
    module.demos = [dspy.Example(ticket="I was charged twice", category="billing", augmented=True),
                    dspy.Example(ticket="My parcel never arrived", category="shipping")]
    if with_lm:
        module.lm = dspy.LM(FAKE_MODEL, model_type="text", temperature=0.0, max_tokens=64)
    return module


def saved(module: Any, path: Path) -> bytes:
    module.save(path)
    return path.read_bytes()


def test_import_creates_an_audited_draft_and_the_approved_export_loads_back_exactly(
        tmp_path, program, author, make_cr, approve, reviewer1, reviewer2, audit):
    written = tuned_predict()
    content = saved(written, tmp_path / "support.json")

    version = dspy_actions.import_dspy_version(program, actor=author, content=content, filename="support.json")

    assert (version.status, version.origin, version.created_by) == ("draft", VersionOrigin.DSPY_IMPORT, author)
    assert version.payload["lm"] == {"model": FAKE_MODEL, "temperature": 0.0, "max_tokens": 64, "mode": "completion"}
    (classify,) = version.payload["program"]["predictors"]
    assert (classify["signature"]["instructions"], len(classify["demos"])) == (INSTRUCTIONS, 2)
    assert classify["signature"]["outputs"][0]["choices"][:2] == ["billing", "refund"]  # the spec's types stay
    assert audit.actions() == ["version.created", "version.dspy_imported"]
    imported_event = audit.events()[-1]
    assert imported_event.after["file"] == "support.json" and imported_event.after["layout"] == "bare"

    cr = make_cr(version=version)
    approve(cr, reviewer1)
    approve(cr, reviewer2)
    version.refresh_from_db()
    audit.mark()
    state = dspy_actions.export_dspy(version, actor=reviewer1)

    (tmp_path / "back.json").write_text(json.dumps(state), encoding="utf-8")
    fresh = dspy.Predict("ticket -> category")
    fresh.load(tmp_path / "back.json")
    assert fresh.dump_state() == written.dump_state()
    assert audit.actions() == ["version.dspy_exported"]


def test_a_file_for_other_fields_is_refused_naming_them_and_nothing_is_written(tmp_path, program, author, audit):
    content = saved(dspy.Predict("question -> answer"), tmp_path / "qa.json")

    with pytest.raises(InvalidInput) as refused:
        dspy_actions.import_dspy_version(program, actor=author, content=content, filename="qa.json")

    assert refused.value.field == "file"
    assert refused.value.message == (
        "the DSPy file does not fit program support: dspy predictor 'self' was written for fields question, "
        "answer, but predictor 'classify' has fields ticket, category (dspy matches fields by position; a file "
        "for other fields would be read into the wrong ones)")
    assert not PromptVersion.objects.filter(program=program).exists()
    assert audit.actions() == []


@pytest.mark.parametrize("content, message", [
    (b"\x80\x05\x95 pickled", "DSPy file program.pkl is a pickle (dspy's .pkl format); pickles run code when loaded "
                              "and are refused"),
    (b"{not json", "DSPy file program.pkl is malformed JSON"),
    (b"[1, 2]", "DSPy file program.pkl: a dspy state must be a JSON object, got list"),
    (b'{"self": {"x": NaN}}', "DSPy file program.pkl is not plain JSON: NaN is not a JSON number"),
    (b'{"self": {"x": 1e400}}', "DSPy file program.pkl is not plain JSON: 1e400 does not fit a floating-point number"),
    (b"[" * 100_000 + b"]" * 100_000, "DSPy file program.pkl is nested too deeply to be a saved program"),
    (b'{"self": {"demos": [{"ticket": "a\\u0000b"}]}}', "DSPy file program.pkl contains a NUL character"),
    (b'{"self": {"demos": [{"ticket": "\\ud800"}]}}', "DSPy file program.pkl contains an unpaired surrogate"),
])
def test_files_that_are_not_dspy_json_are_refused_on_the_file_field(content, message, program, author):
    with pytest.raises(InvalidInput, match=re.escape(message)) as refused:
        dspy_actions.import_dspy_version(program, actor=author, content=content, filename="program.pkl")
    assert refused.value.field == "file"


def test_only_authors_who_are_members_import_and_only_approved_versions_export(tmp_path, program, outsider,
                                                                              author, make_version):
    content = saved(tuned_predict(), tmp_path / "support.json")
    with pytest.raises(PermissionDenied):
        dspy_actions.import_dspy_version(program, actor=outsider, content=content)
    with pytest.raises(IllegalTransition, match="version 1 is draft; only approved versions can be exported"):
        dspy_actions.export_dspy(make_version(), actor=author)


def test_a_program_is_created_from_a_dspy_file_alone(tmp_path, users, author, audit):
    module = dspy.ChainOfThought("question -> answer")
    module.lm = None
    content = saved(module, tmp_path / "qa.json")

    created = dspy_actions.create_program_from_dspy(actor=author, slug="qa", name="QA", content=content,
                                                    filename="qa.json", metric="exact")

    (predictor,) = created.spec["predictors"]
    assert (predictor["name"], predictor["kind"]) == ("predict", "chain_of_thought")
    assert [f["name"] for f in predictor["signature"]["inputs"] + predictor["signature"]["outputs"]] == [
        "question", "answer"]
    assert audit.actions() == ["program.created"]
    with pytest.raises(InvalidInput, match="the file does not say which of its fields") as refused:
        tuned = dspy.Predict("text -> label")
        tuned.signature = tuned.signature.with_instructions("Label it.")
        dspy_actions.create_program_from_dspy(actor=author, slug="s", name="S",
                                              content=saved(tuned, tmp_path / "s.json"))
    assert refused.value.field == "signatures" and not Program.objects.filter(slug="s").exists()


def test_a_spec_file_or_a_dspy_file_gives_a_program_spec(tmp_path, users, author):
    ours = json.dumps({"name": "qa", "predictors": [{"name": "qa", "signature": {
        "inputs": [{"name": "question"}], "outputs": [{"name": "answer"}]}}]})
    from_dspy = dspy_actions.program_spec_from_file(saved(TwoStageLike(), tmp_path / "two.json"), name="two")

    assert dspy_actions.program_spec_from_file(ours, name="ignored") == json.loads(ours)
    assert [(p["name"], p["kind"]) for p in from_dspy["predictors"]] == [
        ("answer", "chain_of_thought"), ("check", "predict")]
    created = dspy_actions.create_program_from_dspy(actor=author, slug="two", name="Two",
                                                    content=(tmp_path / "two.json").read_bytes())
    assert created.spec == from_dspy
    with pytest.raises(InvalidInput, match="DSPy file x.pkl is a pickle") as refused:
        dspy_actions.program_spec_from_file(b"\x80\x05", name="x", filename="x.pkl")
    assert refused.value.field == "file"


class TwoStageLike(dspy.Module):
    def __init__(self) -> None:
        super().__init__()
        self.answer = dspy.ChainOfThought("question -> answer")
        self.check = dspy.Predict("question, answer -> verdict")


# --- API ----------------------------------------------------------------------------------------------------


def test_api_imports_a_multipart_file_or_a_json_state_as_a_draft(api, tmp_path, program, author):
    content = saved(tuned_predict(), tmp_path / "support.json")
    client = api(author)

    uploaded = client.post(f"{V1}/programs/support/import-dspy/",
                           {"file": SimpleUploadedFile("support.json", content), "note": "from the notebook"},
                           format="multipart")
    posted = client.post(f"{V1}/programs/support/import-dspy/", {"state": json.loads(content)}, format="json")

    assert uploaded.status_code == 201, uploaded.content
    assert (uploaded.json()["origin"], uploaded.json()["status"], uploaded.json()["note"]) == (
        "dspy_import", "draft", "from the notebook")
    assert posted.status_code == 201, posted.content
    assert posted.json()["content_hash"] == uploaded.json()["content_hash"]


def test_api_refusals_name_the_field(api, tmp_path, program, author):
    client = api(author)
    other = saved(dspy.Predict("question -> answer"), tmp_path / "qa.json")

    mismatch = client.post(f"{V1}/programs/support/import-dspy/", {"file": SimpleUploadedFile("qa.json", other)},
                           format="multipart")
    pickle = client.post(f"{V1}/programs/support/import-dspy/",
                         {"file": SimpleUploadedFile("p.pkl", b"\x80\x05 pickled")}, format="multipart")
    neither = client.post(f"{V1}/programs/support/import-dspy/", {}, format="json")

    assert error(mismatch)["status"] == 400 and error(mismatch)["field"] == "file"
    assert "written for fields question, answer, but predictor 'classify' has fields ticket, category" in \
        error(mismatch)["detail"]
    assert (error(pickle)["status"], error(pickle)["field"]) == (400, "file")
    assert error(pickle)["detail"].startswith("DSPy file p.pkl is a pickle")
    assert (error(neither)["status"], error(neither)["field"]) == (400, "file")


def test_api_refuses_a_file_over_the_size_limit_reading_no_more_than_it(api, tmp_path, program, author,
                                                                        monkeypatch):
    monkeypatch.setattr(dspy_actions, "MAX_FILE_BYTES", 1000)
    content = saved(tuned_predict(), tmp_path / "support.json")
    assert len(content) > 1000

    response = api(author).post(f"{V1}/programs/support/import-dspy/",
                                {"file": SimpleUploadedFile("support.json", content)}, format="multipart")

    assert error(response) == {"status": 400, "code": "invalid", "field": "file",
                               "detail": "the DSPy file is larger than 1,000 bytes",
                               "errors": {"file": ["the DSPy file is larger than 1,000 bytes"]}}


def test_api_exports_an_approved_version_in_the_layout_asked(api, program, make_approved, make_version, reviewer1):
    approved = make_approved()
    client = api(reviewer1)

    bare = client.get(f"{V1}/versions/{approved.pk}/dspy/")
    module = client.get(f"{V1}/versions/{approved.pk}/dspy/", {"layout": "module"})
    bogus = client.get(f"{V1}/versions/{approved.pk}/dspy/", {"layout": "flat"})
    draft = client.get(f"{V1}/versions/{make_version().pk}/dspy/")

    assert bare.status_code == 200, bare.content
    assert bare["Content-Disposition"] == f'attachment; filename="support-v{approved.number}.dspy.json"'
    loaded = dspy.Predict("ticket -> category")
    loaded.load_state(bare.json())  # the bare layout dspy.Predict reads
    assert loaded.signature.instructions == approved.payload["program"]["predictors"][0]["signature"]["instructions"]
    assert loaded.lm.model == approved.payload["lm"]["model"]
    assert set(module.json()) == {"classify", "metadata"}
    assert (error(bogus)["status"], error(bogus)["field"]) == (400, "layout")
    assert error(draft)["status"] == 409
    assert AuditEvent.objects.filter(action="version.dspy_exported").count() == 2


def test_an_export_of_content_with_no_dspy_form_is_a_400_naming_it(program, make_approved, reviewer1):
    approved = make_approved()
    mangled = copy.deepcopy(approved.payload)
    mangled["program"]["metadata"] = {"dspy": {"lm_predictors": 7}}
    approved.payload = mangled  # not saved: what a payload edited by hand before its approval could hold

    with pytest.raises(InvalidInput, match="version 1 cannot be written as a DSPy file: program 'support_triage': "
                                           "metadata.dspy must hold 'lm_predictors'") as refused:
        dspy_actions.export_dspy(approved, actor=reviewer1)
    assert refused.value.field == "payload"


# --- manage.py import_dspy ----------------------------------------------------------------------------------


def test_command_creates_a_draft_and_names_what_is_wrong(tmp_path, program, author, capsys):
    good = tmp_path / "support.json"
    tuned_predict().save(good)
    dspy.Predict("question -> answer").save(tmp_path / "qa.json")

    call_command("import_dspy", "support", str(good), "--actor", "author")

    version = PromptVersion.objects.get(program=program)
    assert capsys.readouterr().out.strip() == (
        f"created draft version 1 of support from {good} (predictors classify; lm {FAKE_MODEL}; "
        f"hash {version.content_hash})")
    with pytest.raises(CommandError, match="file not found"):
        call_command("import_dspy", "support", str(tmp_path / "missing.json"), "--actor", "author")
    with pytest.raises(CommandError, match="^file: the DSPy file does not fit program support: dspy predictor "
                                           "'self' was written for fields question, answer"):
        call_command("import_dspy", "support", str(tmp_path / "qa.json"), "--actor", "author")
    with pytest.raises(CommandError, match="whole is a directory"):
        tuned_predict().save(tmp_path / "whole", save_program=True)
        call_command("import_dspy", "support", str(tmp_path / "whole"), "--actor", "author")
