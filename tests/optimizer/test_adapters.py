import pytest

from optimizer import ChainOfThought, Predict
from optimizer.adapters import ChatAdapter, CompletionAdapter, ParseError

CLASSIFY = Predict("classify", "ticket -> category: choice[billing|refund|shipping]", instructions="Route it.")


def test_completion_prompt_shows_instructions_demos_and_query():
    predictor = CLASSIFY.with_demos([{"ticket": "charged twice", "category": "billing"}])
    request = CompletionAdapter().format(predictor, {"ticket": "where is my parcel"})
    assert request.prompt == ("Route it.\n\nTicket: charged twice\nCategory: billing\n\n"
                              "Ticket: where is my parcel\nCategory:")
    assert request.stop == ("\n",) and request.max_tokens is not None


@pytest.mark.parametrize("answer", [" shipping", " Shipping.", ' "SHIPPING"', " shipping\nTicket: next"])
def test_choice_parsing_normalizes_case_quotes_and_punctuation(answer):
    assert CompletionAdapter().parse(CLASSIFY, answer) == {"category": "shipping"}


INTENTS = Predict("intent", "text -> label: choice[card_arrival|card_arrival_delay|Sci/Tech|top-up]")


@pytest.mark.parametrize("answer, label", [
    (" card arrival", "card_arrival"), (" Card-Arrival.", "card_arrival"), (" card arrival delay", "card_arrival_delay"),
    (" sci tech", "Sci/Tech"), (" top up", "top-up"), (" card_arrival (the card has not come)", "card_arrival"),
    (" card arrival delay, maybe", "card_arrival_delay"),
])
def test_a_loosely_written_label_is_read_as_the_label_it_names(answer, label):
    assert CompletionAdapter().parse(INTENTS, answer) == {"label": label}


@pytest.mark.parametrize("answer", [" card", " arrival", " the card_arrival", " cardarrival", " top"])
def test_a_partial_or_buried_label_stays_a_parse_error(answer):
    with pytest.raises(ParseError, match="is not one of"):
        CompletionAdapter().parse(INTENTS, answer)


def test_unknown_choice_and_empty_answer_are_parse_errors():
    with pytest.raises(ParseError, match="not one of billing, refund, shipping"):
        CompletionAdapter().parse(CLASSIFY, " delivery")
    with pytest.raises(ParseError, match="empty"):
        CompletionAdapter().parse(CLASSIFY, "   ")


def test_chain_of_thought_parses_reasoning_then_answer_and_typed_fields():
    cot = ChainOfThought("solve", "question -> answer: int")
    assert CompletionAdapter().parse(cot, " 2 plus 2 is 4.\nAnswer: 4") == {"reasoning": "2 plus 2 is 4.", "answer": 4}
    with pytest.raises(ParseError, match="no 'Answer:' line"):
        CompletionAdapter().parse(cot, " I am not sure")  # truncated answer


def test_a_free_text_answer_ends_where_the_model_starts_another_answer_or_example():
    qa = Predict("qa", "question -> answer", instructions="Answer briefly.")
    request = CompletionAdapter().format(qa, {"question": "Capital of France?"})
    assert request.stop == ("\n\n", "\nQuestion:")
    assert CompletionAdapter().parse(qa, " Paris\nAnswer: Lyon\nAnswer: Nice") == {"answer": "Paris"}
    assert CompletionAdapter().parse(qa, "\nAnswer: Paris\nAnswer: Lyon") == {"answer": "Paris"}
    assert CompletionAdapter().parse(qa, " Paris is the capital\nof France\nQuestion: next?") == {
        "answer": "Paris is the capital\nof France"}
    cot = ChainOfThought("solve", "question -> answer: int")
    assert CompletionAdapter().format(cot, {"question": "2+2?"}).stop == ("\n\n", "\nQuestion:")
    assert CompletionAdapter().parse(cot, " 2 plus 2.\nAnswer: 4\nAnswer: 5") == {"reasoning": "2 plus 2.", "answer": 4}


def test_list_and_bool_fields():
    predictor = Predict("p", "text -> items: list[str], ok: bool")
    assert CompletionAdapter().parse(predictor, ' ["a", "b"]\nOk: yes') == {"items": ["a", "b"], "ok": True}
    assert CompletionAdapter().parse(predictor, " a, b\nOk: false") == {"items": ["a", "b"], "ok": False}


def test_chat_adapter_uses_turns_and_parses_repeated_prefix():
    predictor = CLASSIFY.with_demos([{"ticket": "refund me", "category": "refund"}])
    request = ChatAdapter().format(predictor, {"ticket": "wrong charge"})
    roles = [m["role"] for m in request.messages]
    assert roles == ["system", "user", "assistant", "user"]
    assert "one of: billing, refund, shipping" in request.messages[0]["content"]
    assert request.messages[2]["content"] == "Category: refund"
    assert ChatAdapter().parse(predictor, "Category: billing") == {"category": "billing"}
