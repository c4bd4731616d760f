"""The playground: a version tried on one input, against the fake LM server; recorded for the user, never evidence."""

from __future__ import annotations

import pytest

from governance import playground
from governance.errors import InvalidInput, PermissionDenied
from governance.models import Evaluation, PlaygroundCall
from optimizer import ProgramSpec, render_prompts

pytestmark = pytest.mark.django_db

TICKET = "I was charged twice for my order"


def test_a_call_is_recorded_with_the_prompt_sent_raw_answer_fields_and_usage(make_version, author, eval_lm_server,
                                                                              audit):
    version = make_version(instructions="Route the ticket.")
    audit.mark()
    seen = len(eval_lm_server.requests)
    evaluations = Evaluation.objects.count()
    call = playground.try_version(version, actor=author, inputs={"ticket": TICKET})
    sent = eval_lm_server.requests[seen:]
    assert len(sent) == 1 and call.error == ""
    preview = render_prompts(ProgramSpec.from_dict(version.payload["program"]), {"ticket": TICKET}, chat=False)
    assert call.steps[0]["prompt"] == sent[0]["prompt"] == preview[0].prompt  # the preview is what was sent
    assert call.steps[0]["raw"].strip() == call.outputs["category"]
    assert call.prompt_tokens == len(sent[0]["prompt"].split()) and call.completion_tokens == 1
    assert call.latency_ms >= 0 and call.lm_config["model"] == version.payload["lm"]["model"]
    assert call.content_hash == version.content_hash and call.user == author
    assert Evaluation.objects.count() == evaluations  # never evidence
    assert audit.actions() == ["playground.called"]
    assert audit.events()[0].after["version"] == version.number
    assert playground.recent_calls(version, author) == [call]


def test_a_dataset_row_supplies_the_input(program, make_version, reviewer1):
    example = program.datasets.get().examples.order_by("index").first()
    call = playground.try_version(make_version(), actor=reviewer1, inputs={}, example=example)
    assert call.inputs == example.inputs and call.example == example and call.user == reviewer1


def test_an_unreachable_model_is_recorded_as_a_failed_call(make_version, author, settings):
    version = make_version()
    settings.GOVERNANCE_PLAYGROUND_MODELS = ["text-completion-openai/elsewhere"]
    settings.GOVERNANCE_PLAYGROUND_TIMEOUT = 2
    call = playground.try_version(version, actor=author, inputs={"ticket": TICKET},
                                  model="text-completion-openai/elsewhere")
    assert call.error and call.outputs == {} and call.steps == []
    assert call.lm_config == {"model": "text-completion-openai/elsewhere", "temperature": 0.0, "max_tokens": 256}


def test_refusals_write_nothing(make_version, auditor, author, audit):
    version = make_version()
    audit.mark()
    with pytest.raises(PermissionDenied, match="try versions in the playground"):
        playground.try_version(version, actor=auditor, inputs={"ticket": TICKET})
    with pytest.raises(InvalidInput, match="ticket is required") as info:
        playground.try_version(version, actor=author, inputs={"ticket": "  "})
    assert info.value.field == "ticket"
    with pytest.raises(InvalidInput, match="model 'openai/gpt-x' is not one of the configured models"):
        playground.try_version(version, actor=author, inputs={"ticket": TICKET}, model="openai/gpt-x")
    assert PlaygroundCall.objects.count() == 0 and audit.actions() == []
