"""`python -m optimizer import-dspy` / `export-dspy`, run as a user would, on files the real dspy package writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # litellm must not fetch its cost map
dspy = pytest.importorskip("dspy")

ROOT = Path(__file__).resolve().parents[2]
DEMO_PROGRAM = ROOT / "demo" / "support_tickets" / "program.json"


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    return subprocess.run([sys.executable, "-m", "optimizer", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


class TwoStage(dspy.Module):
    def __init__(self) -> None:
        super().__init__()
        self.answer = dspy.ChainOfThought("question -> answer")
        self.check = dspy.Predict("question, answer -> verdict")


def test_import_then_export_gives_back_the_file_dspy_wrote(tmp_path: Path) -> None:
    written = TwoStage()
    written.check.lm = dspy.LM("openai/gpt-4o-mini", temperature=0.3, max_tokens=200)
    written.answer.predict.demos = [dspy.Example(question="2+2?", reasoning="Add.", answer="4", augmented=True)]
    written.save(tmp_path / "dspy.json")

    imported = cli("import-dspy", str(tmp_path / "dspy.json"), "--name", "qa", "--out", str(tmp_path / "qa.json"))
    exported = cli("export-dspy", "--program", str(tmp_path / "qa.json"), "--out", str(tmp_path / "back.json"))

    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip() == (
        f"read 2 predictor(s) (answer, check) in the module layout, lm openai/gpt-4o-mini (temperature 0.3, "
        f"max_tokens 200, chat); wrote {tmp_path / 'qa.json'}")
    assert [p["kind"] for p in json.loads((tmp_path / "qa.json").read_text())["predictors"]] == [
        "chain_of_thought", "predict"]
    assert exported.returncode == 0, exported.stderr
    assert (tmp_path / "back.json").read_text() == (tmp_path / "dspy.json").read_text()
    fresh = TwoStage()
    fresh.load(tmp_path / "back.json")
    assert fresh.dump_state() == written.dump_state()


def test_export_of_a_one_predictor_program_loads_into_a_bare_predict(tmp_path: Path) -> None:
    exported = cli("export-dspy", "--program", str(DEMO_PROGRAM), "--model", "openai/gpt-4o-mini",
                   "--out", str(tmp_path / "bare.json"))

    assert exported.returncode == 0, exported.stderr
    assert exported.stdout.strip() == f"wrote {tmp_path / 'bare.json'} (bare layout, lm openai/gpt-4o-mini)"
    bare = dspy.Predict("ticket -> category")
    bare.load(tmp_path / "bare.json")
    assert bare.lm.model == "openai/gpt-4o-mini"
    assert bare.signature.instructions == json.loads(DEMO_PROGRAM.read_text())["predictors"][0]["signature"][
        "instructions"]


@pytest.mark.parametrize("case, expected", [
    ("other_fields", "error: dspy predictor 'self' was written for fields question, answer, but predictor "
                     "'classify' has fields ticket, category"),
    ("pickle", "is a pickle (dspy's .pkl format); pickles run code when loaded and are refused"),
    ("missing", "missing.json: file not found"),
])
def test_bad_files_are_one_line_errors(case: str, expected: str, tmp_path: Path) -> None:
    paths = {"other_fields": tmp_path / "qa.json", "pickle": tmp_path / "program.pkl",
             "missing": tmp_path / "missing.json"}
    if case != "missing":
        dspy.Predict("question -> answer").save(paths[case])

    result = cli("import-dspy", str(paths[case]), "--program", str(DEMO_PROGRAM), "--out", str(tmp_path / "o.json"))

    assert result.returncode == 2
    assert expected in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o.json").exists()
