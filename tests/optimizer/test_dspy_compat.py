"""DSPy saved-program compatibility, checked against the real dspy package (no network, no LM calls)."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # litellm must not fetch its cost map
dspy = pytest.importorskip("dspy")

from optimizer.dspy_compat import (  # noqa: E402
    dspy_predictor_paths,
    from_dspy_state,
    load_dspy_state,
    save_dspy_state,
    to_dspy_state,
)
from optimizer.errors import SpecError  # noqa: E402
from optimizer.program import REASONING_FIELD, ChainOfThought, Predict, Predictor, Program  # noqa: E402
from optimizer.signatures import Signature  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]

COT_DEMOS = [
    {"question": "2+2?", "reasoning": "Add two and two.", "answer": "4", "augmented": True},
    {"question": "Capital of France?", "answer": "Paris"},
]
CHECK_DEMOS = [{"question": "2+2?", "answer": "4", "verdict": "correct"}]


class TwoStage(dspy.Module):
    """The dspy module our two-predictor program maps onto: attribute name = predictor name."""

    def __init__(self, rationale_field: object = None) -> None:
        super().__init__()
        self.answer = dspy.ChainOfThought("question -> answer", rationale_field=rationale_field)
        self.check = dspy.Predict("question, answer -> verdict")


def two_stage_program() -> Program:
    """Our equivalent of TwoStage, with default instructions, prefixes and descriptions and no demos."""
    return Program(name="qa", predictors=(ChainOfThought("answer", "question -> answer"),
                                          Predict("check", "question, answer -> verdict")))


def tuned_program() -> Program:
    """TwoStage's shape with instructions, a custom prefix and description, and demos."""
    base = two_stage_program()
    answer_signature = Signature.parse("question -> answer", instructions="Answer with a short factoid.",
                                       answer={"prefix": "Final Answer:", "description": "1 to 5 words"})
    answer = Predictor(name="answer", kind="chain_of_thought", signature=answer_signature, demos=tuple(COT_DEMOS))
    check = base.predictor("check").with_instructions("Say whether the answer is correct.").with_demos(CHECK_DEMOS)
    return base.replace_predictor("answer", answer).replace_predictor("check", check)


def tuned_dspy_module() -> TwoStage:
    """A dspy TwoStage tuned the same way as `tuned_program`, through dspy's own API."""
    module = TwoStage()
    inner = module.answer.predict
    inner.signature = (inner.signature.with_instructions("Answer with a short factoid.")
                       .with_updated_fields("answer", prefix="Final Answer:", desc="1 to 5 words"))
    inner.demos = [dspy.Example(**COT_DEMOS[0]), dspy.Example(**COT_DEMOS[1]).with_inputs("question")]
    module.check.signature = module.check.signature.with_instructions("Say whether the answer is correct.")
    module.check.demos = [dspy.Example(**CHECK_DEMOS[0]).with_inputs("question", "answer")]
    return module


def field_view(program: Program) -> dict[str, list[tuple[str, str, str]]]:
    """Per predictor: (name, prefix, description) of every declared field."""
    return {p.name: [(f.name, f.prefix, f.description) for f in p.signature.fields] for p in program.predictors}


def load_warnings(module: object, path: Path, caplog: pytest.LogCaptureFixture) -> list[str]:
    """Load `path` into a dspy module and return dspy's warnings (the "dspy" logger does not propagate)."""
    dspy_logger = logging.getLogger("dspy")
    dspy_logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.WARNING, logger="dspy"):
            module.load(path)  # type: ignore[attr-defined]
    finally:
        dspy_logger.removeHandler(caplog.handler)
    return [r.getMessage() for r in caplog.records if r.name.startswith("dspy")]


def dspy_field_view(predictor: object) -> list[tuple[str, str, str]]:
    fields = predictor.signature.fields  # type: ignore[attr-defined]
    return [(name, f.json_schema_extra["prefix"], f.json_schema_extra["desc"]) for name, f in fields.items()]


# --- paths -------------------------------------------------------------------------------------------------


def test_paths_match_dspy_named_predictors() -> None:
    assert dspy_predictor_paths(two_stage_program()) == [name for name, _ in TwoStage().named_predictors()]
    assert dspy_predictor_paths(two_stage_program()) == ["answer.predict", "check"]


def test_bare_paths_match_dspy_named_predictors() -> None:
    single_predict = Program(name="p", predictors=(Predict("classify", "text -> label"),))
    single_cot = Program(name="c", predictors=(ChainOfThought("answer", "question -> answer"),))
    assert dspy_predictor_paths(single_predict, bare=True) == [
        name for name, _ in dspy.Predict("text -> label").named_predictors()]  # ["self"]
    assert dspy_predictor_paths(single_cot, bare=True) == [
        name for name, _ in dspy.ChainOfThought("question -> answer").named_predictors()]  # ["predict"]


# --- the written format equals dspy's own ------------------------------------------------------------------


def test_state_equals_what_dspy_saves_for_the_equivalent_module(tmp_path: Path) -> None:
    # Our ChainOfThought renders REASONING_FIELD; the equivalent dspy module declares the same rationale.
    rationale = dspy.OutputField(desc=REASONING_FIELD.description)  # dspy infers the prefix "Reasoning:"
    module = TwoStage(rationale_field=rationale)
    module.answer.predict.demos = [dspy.Example(**d) for d in COT_DEMOS]
    module.save(tmp_path / "dspy.json")
    program = two_stage_program().with_choices({}, {"answer": COT_DEMOS})

    assert to_dspy_state(program) == json.loads((tmp_path / "dspy.json").read_text())


def test_bare_predict_state_equals_what_dspy_saves(tmp_path: Path) -> None:
    bare = dspy.Predict("text -> label")
    bare.signature = bare.signature.with_instructions("Label the text.")
    bare.demos = [dspy.Example(text="hi there", label="greeting")]
    bare.save(tmp_path / "dspy.json")
    program = Program(name="p", predictors=(Predict("classify", "text -> label", instructions="Label the text.")
                                            .with_demos([{"text": "hi there", "label": "greeting"}]),))

    save_dspy_state(program, tmp_path / "ours.json", bare=True)

    assert (tmp_path / "ours.json").read_text() == (tmp_path / "dspy.json").read_text()


# --- 1. dspy -> ours ---------------------------------------------------------------------------------------


def test_dspy_saved_program_applies_onto_our_program(tmp_path: Path) -> None:
    tuned_dspy_module().save(tmp_path / "program.json")

    loaded = load_dspy_state(tmp_path / "program.json", two_stage_program())

    expected = tuned_program()
    assert [p.instructions for p in loaded.predictors] == [
        "Answer with a short factoid.", "Say whether the answer is correct."]
    assert field_view(loaded) == field_view(expected)
    assert field_view(loaded)["answer"][1] == ("answer", "Final Answer:", "1 to 5 words")
    assert [list(p.demos) for p in loaded.predictors] == [COT_DEMOS, CHECK_DEMOS]
    assert loaded == expected


def test_dspy_bare_predict_applies_onto_single_predictor_program(tmp_path: Path) -> None:
    bare = dspy.Predict("text -> label")
    bare.signature = bare.signature.with_instructions("Classify the text into one category: a, b.")
    bare.demos = [dspy.Example(text="x", label="a", augmented=True), dspy.Example(text="y", label="b")]
    bare.save(tmp_path / "bare.json")
    assert "signature" in json.loads((tmp_path / "bare.json").read_text())  # dspy writes it flat

    template = Program(name="p", predictors=(Predict("classify", "text -> label"),))
    loaded = load_dspy_state(tmp_path / "bare.json", template)

    (classify,) = loaded.predictors
    assert classify.instructions == "Classify the text into one category: a, b."
    assert [(f.prefix, f.description) for f in classify.signature.fields] == [("Text:", ""), ("Label:", "")]
    assert list(classify.demos) == [{"text": "x", "label": "a", "augmented": True}, {"text": "y", "label": "b"}]


def test_dspy_bare_chain_of_thought_applies_onto_single_predictor_program(tmp_path: Path) -> None:
    bare = dspy.ChainOfThought("question -> answer")
    bare.predict.signature = bare.predict.signature.with_instructions("Answer questions with short answers.")
    bare.predict.demos = [dspy.Example(**COT_DEMOS[0])]
    bare.save(tmp_path / "bare.json")

    template = Program(name="c", predictors=(ChainOfThought("answer", "question -> answer"),))
    loaded = load_dspy_state(tmp_path / "bare.json", template)

    assert loaded.predictors[0].instructions == "Answer questions with short answers."
    assert list(loaded.predictors[0].demos) == [COT_DEMOS[0]]


# --- 2. ours -> dspy ---------------------------------------------------------------------------------------


def test_our_saved_state_loads_into_a_fresh_dspy_module(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    program = tuned_program()
    save_dspy_state(program, tmp_path / "ours.json")
    module = TwoStage()

    assert load_warnings(module, tmp_path / "ours.json", caplog) == []
    assert module.answer.predict.signature.instructions == program.predictor("answer").instructions
    assert module.check.signature.instructions == program.predictor("check").instructions
    assert module.answer.predict.demos == COT_DEMOS
    assert module.check.demos == CHECK_DEMOS
    assert dspy_field_view(module.answer.predict) == [
        ("question", "Question:", "${question}"),
        ("reasoning", REASONING_FIELD.prefix, REASONING_FIELD.description),
        ("answer", "Final Answer:", "1 to 5 words")]


def test_load_warnings_sees_dspy_version_mismatch(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    state = to_dspy_state(tuned_program())
    state["metadata"]["dependency_versions"]["dspy"] = "0.0"
    (tmp_path / "old.json").write_text(json.dumps(state), encoding="utf-8")

    (warning,) = load_warnings(TwoStage(), tmp_path / "old.json", caplog)

    assert "mismatch of dspy version" in warning


def test_bare_state_loads_into_a_fresh_bare_dspy_predict(tmp_path: Path) -> None:
    program = Program(name="p", predictors=(Predict("classify", "text -> label", instructions="Label it.")
                                            .with_demos([{"text": "x", "label": "a"}]),))
    save_dspy_state(program, tmp_path / "ours.json", bare=True)
    bare = dspy.Predict("text -> label")

    bare.load(tmp_path / "ours.json")

    assert bare.signature.instructions == "Label it."
    assert bare.demos == [{"text": "x", "label": "a"}]


# --- 3. round trip -----------------------------------------------------------------------------------------


def test_round_trip_through_dspy_state_is_identity(tmp_path: Path) -> None:
    program = tuned_program()

    assert from_dspy_state(to_dspy_state(program), two_stage_program()) == program
    save_dspy_state(program, tmp_path / "ours.json")
    assert load_dspy_state(tmp_path / "ours.json", two_stage_program()) == program


def test_round_trip_through_dspy_itself_is_identity(tmp_path: Path) -> None:
    program = tuned_program()
    save_dspy_state(program, tmp_path / "ours.json")
    module = TwoStage()
    module.load(tmp_path / "ours.json")
    module.save(tmp_path / "dspy.json")

    assert load_dspy_state(tmp_path / "dspy.json", two_stage_program()) == program


# --- 4. errors ---------------------------------------------------------------------------------------------


def test_missing_predictor_path_raises_spec_error_naming_it() -> None:
    state = to_dspy_state(tuned_program())
    del state["check"]

    with pytest.raises(SpecError, match=re.escape(
            "dspy state has no predictor at path 'check'; predictor paths found: 'answer.predict'")):
        from_dspy_state(state, two_stage_program())


def test_field_count_mismatch_raises_spec_error_naming_the_path() -> None:
    state = to_dspy_state(tuned_program())
    state["answer.predict"]["signature"]["fields"].pop(1)  # drop the reasoning field

    with pytest.raises(SpecError, match=re.escape(
            "dspy predictor 'answer.predict' has 2 signature fields, but predictor 'answer' has 3 "
            "(question, reasoning, answer)")):
        from_dspy_state(state, two_stage_program())


def test_plain_predict_state_does_not_fit_a_chain_of_thought(tmp_path: Path) -> None:
    single = dspy.Predict("question -> answer")
    single.save(tmp_path / "bare.json")
    template = Program(name="c", predictors=(ChainOfThought("answer", "question -> answer"),))

    with pytest.raises(SpecError, match="no predictor at path 'answer.predict'"):
        load_dspy_state(tmp_path / "bare.json", template)


def test_extra_keys_are_ignored() -> None:
    state = to_dspy_state(tuned_program())
    state["other.predict"] = {"signature": {}}
    state["check"]["fields"] = {}  # dspy >= 3.4 may write per-predictor decision fields
    state["check"]["lm"] = {"model": "openai/gpt-4o-mini"}

    assert from_dspy_state(state, two_stage_program()) == tuned_program()


def test_malformed_states_raise_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="a dspy state must be a JSON object, got list"):
        from_dspy_state([], two_stage_program())  # type: ignore[arg-type]
    state = to_dspy_state(tuned_program())
    state["check"]["signature"]["fields"][0] = {"prefix": "Question:"}
    with pytest.raises(SpecError, match=r"dspy predictor 'check': field 0 must be an object"):
        from_dspy_state(state, two_stage_program())
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(SpecError, match="malformed JSON"):
        load_dspy_state(tmp_path / "bad.json", two_stage_program())


def test_unmappable_programs_raise_spec_error() -> None:
    with pytest.raises(SpecError, match="would collide with dspy's top-level 'metadata' key"):
        to_dspy_state(Program(name="m", predictors=(Predict("metadata", "a -> b"),)))
    with pytest.raises(SpecError, match="only a one-predictor program maps onto a bare dspy module"):
        to_dspy_state(two_stage_program(), bare=True)


def test_module_imports_neither_dspy_nor_django() -> None:
    code = ("import sys, optimizer.dspy_compat; "
            "assert not {'dspy', 'django'} & set(sys.modules), sorted({'dspy', 'django'} & set(sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
