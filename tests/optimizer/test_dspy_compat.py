"""DSPy saved-program compatibility, checked against the real dspy package (no network, no LM calls)."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import warnings
from dataclasses import replace
from pathlib import Path

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # litellm must not fetch its cost map
dspy = pytest.importorskip("dspy")

from optimizer.dspy_compat import (  # noqa: E402
    dspy_predictor_paths,
    dumps_dspy_state,
    export_dspy_state,
    from_dspy_state,
    import_dspy_state,
    load_dspy_state,
    program_from_dspy,
    read_dspy_file,
    save_dspy_state,
    to_dspy_state,
)
from optimizer.errors import SignatureHintError, SpecError  # noqa: E402
from optimizer.program import REASONING_FIELD, ChainOfThought, Predict, Predictor, Program  # noqa: E402
from optimizer.signatures import Field, Signature  # noqa: E402

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
    # dspy's default reasoning field (description "${reasoning}") is kept, not replaced by ours
    assert loaded.predictor("answer").reasoning == Field("reasoning", prefix="Reasoning:", description="")
    assert loaded == replace(expected, predictors=(
        replace(expected.predictors[0], reasoning=loaded.predictor("answer").reasoning), expected.predictors[1]))


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
    state["check"]["other"] = [1, 2]

    assert from_dspy_state(state, two_stage_program()) == tuned_program()


def test_malformed_states_raise_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="a dspy state must be a JSON object, got list"):
        from_dspy_state([], two_stage_program())  # type: ignore[arg-type]
    state = to_dspy_state(tuned_program())
    state["check"]["signature"]["fields"][0] = {"prefix": "Question:"}
    with pytest.raises(SpecError, match=r"dspy predictor 'check': field 0 must be an object"):
        from_dspy_state(state, two_stage_program())
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(SpecError, match="bad.json is malformed JSON"):
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


# --- 5. exact round trips: dspy writes, we import and export, a fresh dspy module loads --------------------


def round_trip(written: object, fresh: object, template: Program, tmp_path: Path) -> dict[str, object]:
    """Save `written` with dspy, import it onto `template`, export it back, load that into `fresh` (dspy).

    Asserts the exported file is byte for byte the one dspy wrote and that `fresh` ends up with the
    `dump_state()` of `written`; returns the import's LM settings.
    """
    written.save(tmp_path / "dspy.json")  # type: ignore[attr-defined]
    imported = import_dspy_state(read_dspy_file(tmp_path / "dspy.json"), template)
    exported = dumps_dspy_state(export_dspy_state(imported.program, lm=imported.lm))
    (tmp_path / "ours.json").write_text(exported, encoding="utf-8")

    fresh.load(tmp_path / "ours.json")  # type: ignore[attr-defined]

    assert exported == (tmp_path / "dspy.json").read_text(encoding="utf-8")
    assert fresh.dump_state() == written.dump_state()  # type: ignore[attr-defined]
    return {"lm": imported.lm, "program": imported.program}


def test_round_trip_bare_predict(tmp_path: Path) -> None:
    written = dspy.Predict("ticket -> category")
    written.signature = (written.signature.with_instructions("Route the ticket.")
                         .with_updated_fields("category", desc="one of billing, shipping"))
    written.demos = [dspy.Example(ticket="charged twice", category="billing", augmented=True),
                     dspy.Example(ticket="where is my parcel", category="shipping")]
    template = Program(name="t", predictors=(Predict("route", "ticket -> category"),))

    result = round_trip(written, dspy.Predict("ticket -> category"), template, tmp_path)

    (route,) = result["program"].predictors  # type: ignore[attr-defined]
    assert route.instructions == "Route the ticket."
    assert route.signature.outputs[0].description == "one of billing, shipping"
    assert result["lm"] is None


def test_round_trip_chain_of_thought_with_the_default_reasoning_field(tmp_path: Path) -> None:
    written = dspy.ChainOfThought("question -> answer")
    written.predict.demos = [dspy.Example(**COT_DEMOS[0])]
    template = Program(name="c", predictors=(ChainOfThought("answer", "question -> answer"),))

    result = round_trip(written, dspy.ChainOfThought("question -> answer"), template, tmp_path)

    assert dspy_field_view(written.predict)[1] == ("reasoning", "Reasoning:", "${reasoning}")
    (answer,) = result["program"].predictors  # type: ignore[attr-defined]
    assert answer.reasoning_field == Field("reasoning", prefix="Reasoning:", description="")


def test_round_trip_chain_of_thought_with_a_custom_reasoning_field(tmp_path: Path) -> None:
    with warnings.catch_warnings():  # dspy 3.4 calls `prefix` deprecated, yet saves and loads it: it must survive
        warnings.simplefilter("ignore", DeprecationWarning)
        rationale = dspy.OutputField(prefix="Rationale:", desc="the steps that lead to the answer")
    written = dspy.ChainOfThought("question -> answer", rationale_field=rationale)
    written.predict.signature = written.predict.signature.with_instructions("Answer briefly.")
    template = Program(name="c", predictors=(ChainOfThought("answer", "question -> answer"),))

    result = round_trip(written, dspy.ChainOfThought("question -> answer"), template, tmp_path)

    (answer,) = result["program"].predictors  # type: ignore[attr-defined]
    assert answer.reasoning_field == Field("reasoning", prefix="Rationale:",
                                           description="the steps that lead to the answer")
    assert answer.rendered_signature.outputs[0] == answer.reasoning_field  # what our adapter renders too


def test_round_trip_two_stage_module(tmp_path: Path) -> None:
    result = round_trip(tuned_dspy_module(), TwoStage(), two_stage_program(), tmp_path)

    assert [p.instructions for p in result["program"].predictors] == [  # type: ignore[attr-defined]
        "Answer with a short factoid.", "Say whether the answer is correct."]


def test_round_trip_predictor_with_an_lm_block(tmp_path: Path) -> None:
    written = TwoStage()
    written.check.lm = dspy.LM("openai/gpt-4o-mini", temperature=0.3, max_tokens=200)

    result = round_trip(written, TwoStage(), two_stage_program(), tmp_path)

    assert result["lm"] == {"model": "openai/gpt-4o-mini", "temperature": 0.3, "max_tokens": 200, "mode": "chat"}


def test_lm_block_with_null_settings_round_trips_and_takes_the_callers_defaults(tmp_path: Path) -> None:
    written = dspy.Predict("text -> label")
    written.lm = dspy.LM("text-completion-openai/x", model_type="text")  # temperature, max_tokens None
    written.save(tmp_path / "dspy.json")

    imported = import_dspy_state(read_dspy_file(tmp_path / "dspy.json"),
                                 Program(name="p", predictors=(Predict("label", "text -> label"),)),
                                 default_lm={"temperature": 0.0, "max_tokens": 64})

    assert imported.lm == {"model": "text-completion-openai/x", "temperature": 0.0, "max_tokens": 64,
                           "mode": "completion"}
    assert export_dspy_state(imported.program, lm=imported.lm) == json.loads((tmp_path / "dspy.json").read_text())


def test_changed_lm_settings_are_written_into_the_lm_blocks(tmp_path: Path) -> None:
    written = TwoStage()
    written.check.lm = dspy.LM("openai/gpt-4o-mini", temperature=0.3, max_tokens=200)
    written.save(tmp_path / "dspy.json")
    imported = import_dspy_state(read_dspy_file(tmp_path / "dspy.json"), two_stage_program())
    edited = {**(imported.lm or {}), "model": "openai/gpt-4o", "temperature": 0.7}
    save_path = tmp_path / "ours.json"
    save_path.write_text(dumps_dspy_state(export_dspy_state(imported.program, lm=edited)), encoding="utf-8")

    fresh = TwoStage()
    fresh.load(save_path)

    assert fresh.answer.predict.lm is None  # only the predictor that had a block gets one
    assert (fresh.check.lm.model, fresh.check.lm.kwargs["temperature"], fresh.check.lm.kwargs["max_tokens"]) == (
        "openai/gpt-4o", 0.7, 200)


def test_a_program_that_never_came_from_dspy_exports_its_lm_into_every_predictor(tmp_path: Path) -> None:
    lm = {"model": "openai/gpt-4o-mini", "temperature": 0.0, "max_tokens": 256}
    save_path = tmp_path / "ours.json"
    save_path.write_text(dumps_dspy_state(export_dspy_state(tuned_program(), lm=lm)), encoding="utf-8")

    fresh = TwoStage()
    fresh.load(save_path)

    for predictor in (fresh.answer.predict, fresh.check):
        assert (predictor.lm.model, predictor.lm.model_type, predictor.lm.kwargs["max_tokens"]) == (
            "openai/gpt-4o-mini", "chat", 256)


def test_different_lm_blocks_are_refused_naming_the_predictors(tmp_path: Path) -> None:
    written = TwoStage()
    written.answer.predict.lm = dspy.LM("openai/gpt-4o-mini")
    written.check.lm = dspy.LM("openai/gpt-4o")
    written.save(tmp_path / "dspy.json")

    with pytest.raises(SpecError, match=re.escape("dspy predictors 'answer', 'check' have different lm blocks")):
        import_dspy_state(read_dspy_file(tmp_path / "dspy.json"), two_stage_program())


# --- 6. layouts ---------------------------------------------------------------------------------------------


def test_a_one_predictor_program_exports_in_the_layout_dspy_predict_load_reads(tmp_path: Path) -> None:
    program = Program(name="p", predictors=(Predict("classify", "text -> label", instructions="Label it."),))
    (tmp_path / "ours.json").write_text(dumps_dspy_state(export_dspy_state(program)), encoding="utf-8")
    with pytest.raises(KeyError):  # the module layout is not what a bare Predict reads (the old export)
        dspy.Predict("text -> label").load_state(to_dspy_state(program))

    bare = dspy.Predict("text -> label")
    bare.load(tmp_path / "ours.json")

    assert bare.signature.instructions == "Label it."


def test_a_one_predictor_module_read_in_the_module_layout_exports_in_it_again(tmp_path: Path) -> None:
    class Single(dspy.Module):
        def __init__(self) -> None:
            super().__init__()
            self.classify = dspy.Predict("text -> label")

    template = Program(name="p", predictors=(Predict("classify", "text -> label"),))
    result = round_trip(Single(), Single(), template, tmp_path)

    assert result["program"].metadata["dspy"]["layout"] == "module"  # type: ignore[attr-defined]
    with pytest.raises(SpecError, match="layout must be one of auto, bare, module"):
        export_dspy_state(template, layout="flat")
    with pytest.raises(SpecError, match="layout 'bare' is for a one-predictor program; 'qa' has 2 predictors"):
        export_dspy_state(two_stage_program(), layout="bare")


# --- 7. files for other fields, and files that are not dspy JSON ---------------------------------------------


def test_a_file_written_for_other_fields_is_refused_naming_them(tmp_path: Path) -> None:
    dspy.Predict("ticket -> category").save(tmp_path / "dspy.json")
    template = Program(name="qa", predictors=(Predict("qa", "question -> answer"),))

    with pytest.raises(SpecError, match=re.escape(
            "dspy predictor 'self' was written for fields ticket, category, but predictor 'qa' has fields "
            "question, answer")):
        load_dspy_state(tmp_path / "dspy.json", template)


def test_demos_for_other_fields_are_refused_even_when_descriptions_say_nothing(tmp_path: Path) -> None:
    written = dspy.Predict("ticket -> category")
    written.signature = (written.signature.with_updated_fields("ticket", desc="the customer's message")
                         .with_updated_fields("category", desc="where it goes"))
    written.demos = [dspy.Example(ticket="charged twice", category="billing")]
    written.save(tmp_path / "dspy.json")
    template = Program(name="qa", predictors=(Predict("qa", "question -> answer"),))

    with pytest.raises(SpecError, match=re.escape(
            "dspy predictor 'self': demo 0 has fields ticket, category, but predictor 'qa' reads question")):
        load_dspy_state(tmp_path / "dspy.json", template)


def test_a_missing_file_a_directory_and_a_pickle_are_clean_errors(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=re.escape(f"{tmp_path / 'nope.json'}: file not found")):
        read_dspy_file(tmp_path / "nope.json")
    dspy.Predict("text -> label").save(tmp_path / "program.pkl")
    with pytest.raises(SpecError, match=re.escape("program.pkl is a pickle (dspy's .pkl format); pickles run "
                                                  "code when loaded and are refused")):
        read_dspy_file(tmp_path / "program.pkl")
    dspy.Predict("text -> label").save(tmp_path / "whole", save_program=True)
    with pytest.raises(SpecError, match="whole is a directory"):
        read_dspy_file(tmp_path / "whole")
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe{}")
    with pytest.raises(SpecError, match="binary.json is not UTF-8 JSON"):
        read_dspy_file(tmp_path / "binary.json")


def test_traces_a_version_cannot_keep_are_refused() -> None:
    state = to_dspy_state(tuned_program())
    state["check"]["train"] = [{"question": "q"}]

    with pytest.raises(SpecError, match="dspy predictor 'check' holds 'train' data"):
        from_dspy_state(state, two_stage_program())


# --- 8. a program spec from a file alone ---------------------------------------------------------------------


def test_a_program_spec_is_read_from_a_dspy_file_alone(tmp_path: Path) -> None:
    written = TwoStage()
    written.save(tmp_path / "dspy.json")

    imported = program_from_dspy(read_dspy_file(tmp_path / "dspy.json"), name="qa")

    answer, check = imported.program.predictors
    assert (answer.name, answer.kind, answer.signature.input_names, answer.signature.output_names) == (
        "answer", "chain_of_thought", ["question"], ["answer"])
    assert (check.name, check.kind, check.signature.input_names, check.signature.output_names) == (
        "check", "predict", ["question", "answer"], ["verdict"])
    fresh = TwoStage()
    fresh.load_state(export_dspy_state(imported.program))
    assert fresh.dump_state() == written.dump_state()


def test_a_tuned_file_needs_the_signature_dspy_did_not_save(tmp_path: Path) -> None:
    written = dspy.Predict("text -> label")
    written.signature = (written.signature.with_instructions("Label the text.")
                         .with_updated_fields("label", desc="positive or negative"))
    written.save(tmp_path / "dspy.json")
    state = read_dspy_file(tmp_path / "dspy.json")

    with pytest.raises(SignatureHintError, match=re.escape(
            "dspy predictor 'self': the file does not say which of its fields (text, label) are inputs (dspy does "
            "not save it); give its signature under the name 'predict', e.g. 'text -> label'")) as needed:
        program_from_dspy(state, name="sentiment")
    assert needed.value.predictor == "predict"
    imported = program_from_dspy(state, name="sentiment",
                                 signatures={"predict": "text -> label: choice[positive|negative]"})

    (predict,) = imported.program.predictors
    assert predict.signature.outputs[0].choices == ("positive", "negative")
    assert predict.signature.outputs[0].description == "positive or negative"
    with pytest.raises(SpecError, match=re.escape(
            "signatures name predictor(s) other the file does not have (its predictors: predict)")):
        program_from_dspy(state, name="s", signatures={"other": "a -> b"})


def test_a_reasoning_field_is_kept_in_the_program_json_only_when_it_is_its_own() -> None:
    plain = ChainOfThought("answer", "question -> answer")
    own = replace(plain, reasoning=Field("reasoning", prefix="Rationale:", description="why"))

    assert "reasoning" not in plain.to_dict()  # the JSON (and the content hash) of older programs is unchanged
    assert Predictor.from_dict(own.to_dict()) == own
    with pytest.raises(SpecError, match="only a chain_of_thought predictor has a reasoning field"):
        replace(Predict("p", "a -> b"), reasoning=Field("reasoning"))
    with pytest.raises(SpecError, match="the reasoning field must be a str field named 'reasoning'"):
        replace(plain, reasoning=Field("why"))


def test_the_facade_exports_the_dspy_functions() -> None:
    import optimizer

    assert optimizer.import_dspy_state is import_dspy_state
    assert optimizer.program_from_dspy is program_from_dspy
