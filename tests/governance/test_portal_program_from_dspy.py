"""A new program from a DSPy saved-program file on the portal's "new program" page (issue 14 item 1).

Every file is written by the real dspy package in the test. The page goes through
`dspy_files.create_program_from_file` (audited `program.created`); every refusal is a 400 naming the form field
(the upload or the signatures) and writes nothing.
"""

from __future__ import annotations

import html
import os
import re
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from governance.models import AuditEvent, Program
from tests.governance.conftest import FAKE_MODEL

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # litellm must not fetch its cost map
dspy = pytest.importorskip("dspy")

pytestmark = pytest.mark.django_db

FORM = {"slug": "qa-check", "name": "QA with a check", "description": "", "metric": "exact",
        "model": "openai/gpt-4o-mini", "api_base": "http://127.0.0.1:8080/v1"}


class AnswerThenCheck(dspy.Module):
    def __init__(self) -> None:
        super().__init__()
        self.answer = dspy.ChainOfThought("question -> answer")
        self.check = dspy.Predict("question, answer -> verdict")


def _tuned_label() -> Any:
    """A Predict whose instructions were tuned: the file no longer says that `text` is its input."""
    module = dspy.Predict("text -> label")
    module.signature = module.signature.with_instructions("Label the review.")
    return module


def _upload(module: Any, tmp_path: Path, name: str = "program.json") -> SimpleUploadedFile:
    module.save(tmp_path / name)
    return SimpleUploadedFile(name, (tmp_path / name).read_bytes(), content_type="application/json")


def _post(client, user, **fields: Any):
    client.force_login(user)
    return client.post("/programs/new/", {**FORM, **fields})


def _field_errors(response, field: str) -> str:
    """The text of the error list under form field `field` ("" if it has none)."""
    found = re.search(rf'id="id_{field}_error"[^>]*>(.*?)</ul>', response.content.decode(), re.S)
    return html.unescape(re.sub(r"<[^>]+>", "", found.group(1))) if found else ""


def _nothing_created() -> bool:
    return not Program.objects.exists() and not AuditEvent.objects.filter(action="program.created").exists()


def test_a_two_stage_dspy_file_becomes_a_program_with_its_predictors_fields_and_lm(client, author, tmp_path):
    written = AnswerThenCheck()
    written.lm = dspy.LM(FAKE_MODEL, model_type="text", temperature=0.0, max_tokens=64)
    for predictor in written.predictors():
        predictor.lm = written.lm

    response = _post(client, author, spec_file=_upload(written, tmp_path))

    assert response.status_code == 302 and response["Location"] == "/programs/qa-check/"
    program = Program.objects.get(slug="qa-check")
    assert [(p["name"], p["kind"], [f["name"] for f in p["signature"]["inputs"]],
             [f["name"] for f in p["signature"]["outputs"]]) for p in program.spec["predictors"]] == [
        ("answer", "chain_of_thought", ["question"], ["answer"]),
        ("check", "predict", ["question", "answer"], ["verdict"])]
    # the file's LM over the form's model; the endpoint the file does not say is the form's
    assert program.lm_config["model"] == FAKE_MODEL
    assert (program.lm_config["api_base"], program.lm_config["max_tokens"]) == ("http://127.0.0.1:8080/v1", 64)
    assert (program.metric, program.owner) == ("exact", author)
    assert AuditEvent.objects.filter(action="program.created", program=program).count() == 1


def test_a_dspy_file_without_its_inputs_is_refused_naming_the_signature_to_give_then_accepted_with_it(
        client, author, tmp_path):
    refused = _post(client, author, spec_file=_upload(_tuned_label(), tmp_path))

    assert refused.status_code == 400
    assert "the file does not say which of its fields (text, label) are inputs" in _field_errors(refused, "signatures")
    assert "give its signature under the name 'predict', e.g. 'text -> label'" in _field_errors(refused, "signatures")
    assert "one line per predictor, name: inputs -> outputs" in html.unescape(refused.content.decode())  # help
    assert _nothing_created()

    accepted = _post(client, author, spec_file=_upload(_tuned_label(), tmp_path),
                     signatures="predict: text -> label: choice[positive|negative]\n")

    assert accepted.status_code == 302, _field_errors(accepted, "signatures")
    (predict,) = Program.objects.get(slug="qa-check").spec["predictors"]
    assert predict["signature"]["instructions"] == "Label the review."
    assert predict["signature"]["outputs"][0]["choices"] == ["positive", "negative"]
    assert Program.objects.get(slug="qa-check").lm_config["model"] == "openai/gpt-4o-mini"  # no lm in the file


@pytest.mark.parametrize("content, message", [
    (b"\x80\x05\x95 pickled", "file program.pkl is a pickle (dspy's .pkl format); pickles run code"),
    (b"{not json", "file program.pkl is malformed JSON"),
    (b"[1, 2]", "file program.pkl: a dspy state must be a JSON object, got list"),
    (b'{"name": "qa"}', "program.pkl has no \"predictors\" list (a program spec's), so it was read as a DSPy file"),
    (b'{"name": "qa", "predictors": [{"name": "qa"}]}', "file is not a valid program"),
    (b" " * (5 * 1024 * 1024 + 1), "the file is larger than 5,242,880 bytes"),
])
def test_a_file_that_is_no_program_is_refused_on_the_upload_field(client, author, content, message):
    response = _post(client, author, spec_file=SimpleUploadedFile("program.pkl", content))

    assert response.status_code == 400
    assert message in _field_errors(response, "spec_file")
    assert _nothing_created()


def test_a_signature_that_does_not_fit_the_file_is_refused_on_the_signatures_field(client, author, tmp_path):
    cases = {
        "predict text -> label": "line 1 must be 'predictor: inputs -> outputs'",
        "predict: text -> label\npredict: text -> label": "line 2 gives predictor 'predict' a second signature",
        "classify: text -> label": "signatures name predictor(s) classify the file does not have (its predictors: "
                                   "predict)",
        "predict: text, source -> label": "dspy predictor 'self' has 2 fields; the signature given for it has 3",
        "predict: text -> label: choice[]": "signature given for predictor 'predict'",
    }
    for signatures, message in cases.items():
        response = _post(client, author, spec_file=_upload(_tuned_label(), tmp_path), signatures=signatures)
        assert response.status_code == 400, signatures
        assert message in _field_errors(response, "signatures"), (signatures, _field_errors(response, "signatures"))
    assert _nothing_created()


def test_signatures_without_a_dspy_file_are_refused(client, author, tmp_path):
    spec = b'{"name": "qa", "predictors": [{"name": "qa", "signature": {"inputs": [{"name": "question"}], ' \
           b'"outputs": [{"name": "answer"}]}}]}'

    with_spec = _post(client, author, spec_file=SimpleUploadedFile("spec.json", spec), signatures="qa: q -> a")
    with_rows = _post(client, author, signatures="predict: text -> label", **{
        "p0-name": "qa", "p0-kind": "predict", "p0-in0-name": "question", "p0-out0-name": "answer"})

    assert with_spec.status_code == 400
    assert "signatures are for a DSPy file; spec.json is a program spec" in _field_errors(with_spec, "signatures")
    assert with_rows.status_code == 400
    assert "DSPy signatures are read with a DSPy file: choose the file" in _field_errors(with_rows, "signatures")
    assert _nothing_created()


def test_only_authors_create_a_program_from_a_file(client, reviewer1, tmp_path):
    response = _post(client, reviewer1, spec_file=_upload(AnswerThenCheck(), tmp_path))

    assert response.status_code == 403
    assert _nothing_created()
