import json

import pytest

from optimizer import ChainOfThought, Field, Predict, Program, Signature, SpecError
from optimizer.program import Predictor


def test_shorthand_parses_names_and_types():
    sig = Signature.parse("question, context -> answer: int", instructions="Count.")
    assert sig.input_names == ["question", "context"]
    assert sig.outputs[0].type == "int"
    assert sig.inputs[0].prefix == "Question:"


def test_choice_shorthand_and_validation():
    sig = Signature.parse("text -> label: choice[positive|negative]")
    assert sig.outputs[0].choices == ("positive", "negative")
    with pytest.raises(SpecError, match="needs a non-empty list of choices"):
        Field(name="label", type="choice")
    with pytest.raises(SpecError, match="unknown type 'number'"):
        Field(name="x", type="number")
    with pytest.raises(SpecError, match="duplicate field name"):
        Signature.parse("a -> a")


def test_program_round_trips_through_json_unchanged(tmp_path):
    program = Program("qa", (ChainOfThought("reason", "question -> draft"),
                             Predict("finish", "question, draft -> answer: list[str]", instructions="List them.")))
    program = program.replace_predictor("finish", program.predictor("finish").with_demos(
        [{"question": "q?", "draft": "d", "answer": ["a", "b"], "augmented": True}]))
    text = program.to_json()
    again = Program.from_json(text)
    assert again == program
    assert json.loads(again.to_json()) == json.loads(text)
    assert again.content_hash() == program.content_hash()


def test_pipeline_inputs_and_chain_of_thought_reasoning():
    program = Program("p", (ChainOfThought("a", "question -> draft"), Predict("b", "draft, question -> answer")))
    assert program.input_names == ["question"]
    assert program.output_names == ["answer"]
    assert program.predictors[0].rendered_signature.output_names == ["reasoning", "draft"]


def test_bad_program_json_is_a_spec_error():
    with pytest.raises(SpecError, match="malformed"):
        Program.from_json("{not json")
    with pytest.raises(SpecError, match="unknown key"):
        Program.from_dict({"predictors": [], "extra": 1})
    with pytest.raises(SpecError, match="unknown kind"):
        Predictor.from_dict({"name": "x", "kind": "react", "signature": Signature.parse("a -> b").to_dict()})
