"""The preview shows exactly what the optimizer sends: compared with the request bodies the fake server received."""

from __future__ import annotations

from optimizer import LM, ChainOfThought, Predict, ProgramSpec, render_prompts, run_with_prompts

CLASSIFY = Predict("classify", "ticket -> category: choice[billing|refund|shipping]", instructions="Route it.")
TWO_STAGE = ProgramSpec(name="two", predictors=(
    CLASSIFY.with_demos([{"ticket": "charged twice", "category": "billing"}]),
    ChainOfThought("reply", "ticket, category -> reply", instructions="Write a short reply."),
))
TICKET = {"ticket": "my parcel never came"}


def test_completion_preview_is_the_prompt_sent_and_later_inputs_are_placeholders(fake_server, fake_lm_config):
    fake_server.responder = lambda prompt, body: "shipping" if prompt.endswith("Category:") else "late.\nReply: Sorry"
    previews = render_prompts(TWO_STAGE, TICKET, chat=False)
    assert "Category: <category from classify>" in previews[1].prompt
    with LM(fake_lm_config()) as lm:
        prediction, calls = run_with_prompts(TWO_STAGE, TICKET, lm)
    assert prediction.ok and prediction.outputs["reply"] == "Sorry"
    assert [body["prompt"] for body in fake_server.requests] == [call.request.prompt for call in calls]
    assert calls[0].request == previews[0]  # the first predictor reads only typed inputs: preview == what is sent
    assert calls[0].raw == "shipping" and calls[0].outputs == {"category": "shipping"}
    assert calls[1].request.prompt.endswith("Ticket: my parcel never came\nCategory: shipping\nReasoning:")
    assert [list(body["stop"]) for body in fake_server.requests] == [list(c.request.stop) for c in calls]


def test_chat_preview_is_the_messages_sent(fake_server, fake_lm_config):
    fake_server.responder = lambda prompt, body: "Category: refund"
    program = ProgramSpec(name="one", predictors=(CLASSIFY,))
    with LM(fake_lm_config(model="openai/fake")) as lm:
        prediction, calls = run_with_prompts(program, TICKET, lm)
    assert prediction.outputs == {"category": "refund"}
    preview = render_prompts(program, TICKET, chat=True)[0]
    assert fake_server.requests[0]["messages"] == list(preview.messages) == list(calls[0].request.messages)
    assert preview.as_text().startswith("[system]\nRoute it.")


def test_a_failed_predictor_ends_the_list_with_its_raw_answer_and_error(fake_server, fake_lm_config):
    fake_server.responder = lambda prompt, body: "delivery"
    with LM(fake_lm_config()) as lm:
        prediction, calls = run_with_prompts(TWO_STAGE, TICKET, lm)
    assert not prediction.ok and len(calls) == 1
    assert calls[0].raw == "delivery" and "not one of billing, refund, shipping" in calls[0].error
