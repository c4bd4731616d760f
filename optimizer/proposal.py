"""Phase 2: grounded instruction proposals.

Each proposal prompt carries a dataset summary, a program summary, up to three demos, a random tip, and -
beyond DSPy - the instructions tried so far with their scores and examples the current best gets wrong
(failure-aware proposal, as users asked in dspy#9870). Candidate 0 is always the original instruction.
Prompts are completion-style so base models without a chat template can answer them too. A prompt that would
not fit the model's context window shows fewer examples (and, if one is still too long, a cut of it).
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from optimizer.adapters import format_value
from optimizer.data import Example
from optimizer.errors import BudgetExceeded, LMError
from optimizer.fitting import MAX_INSTRUCTION_CHARS, prompt_fits
from optimizer.program import Demo, Predictor, Program

if TYPE_CHECKING:
    from optimizer.lm import LM

logger = logging.getLogger(__name__)

SUMMARY_TOKENS = 80
PROPOSAL_TOKENS = 120
SHORTENED_VALUE_CHARS = 300  # a value kept in a proposal prompt that would not fit with the value whole

TIPS = {
    "none": "",
    "creative": "Don't be afraid to be creative when creating the new instruction!",
    "simple": "Keep the instruction clear and concise.",
    "description": "Make sure your instruction is very informative and descriptive.",
    "high_stakes": "The instruction should include a high stakes scenario in which the LM must solve the task!",
    "persona": "Include a persona that is relevant to the task in the instruction (ie. \"You are a ...\")",
}


@dataclass(frozen=True)
class InstructionCandidate:
    text: str
    source: str  # "original", "lm" or "fallback" (the LM's answer was unusable)
    tip: str = "none"

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "source": self.source, "tip": self.tip}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InstructionCandidate:
        return cls(data["text"], data["source"], data.get("tip", "none"))


@dataclass
class ProposalContext:
    """What a proposal may look at: grows as earlier candidates are scored."""

    dataset_summary: str
    program_summary: str
    scored: list[tuple[str, float]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def describe_program(program: Program) -> str:
    """A deterministic program summary from its structure (no LM call needed for this part)."""
    steps = []
    for i, p in enumerate(program.predictors, start=1):
        sig = p.rendered_signature
        steps.append(f"step {i} ({p.name}) reads {', '.join(sig.input_names)} and writes {', '.join(sig.output_names)}")
    return f"The program '{program.name}' has {len(steps)} step(s): " + "; ".join(steps) + "."


def summarize_dataset(trainset: Sequence[Example], lm: LM, rng: random.Random, n_examples: int = 8) -> str:
    """One proposal-LM call describing the data; falls back to a field/label census if the answer is empty."""
    sample = rng.sample(list(trainset), min(n_examples, len(trainset)))
    records = [_render_record(ex.as_record()) for ex in sample]
    prompt = _summary_prompt(records)
    while len(records) > 1 and not prompt_fits(lm, prompt, SUMMARY_TOKENS):
        records.pop()  # fewer examples rather than a prompt the model refuses
        prompt = _summary_prompt(records)
    if not prompt_fits(lm, prompt, SUMMARY_TOKENS):
        prompt = _summary_prompt([_render_record(sample[0].as_record(), SHORTENED_VALUE_CHARS)])
    try:
        answer = lm.complete(prompt, stop=["\n\n"], max_tokens=SUMMARY_TOKENS).text
    except BudgetExceeded:
        raise
    except LMError as exc:
        logger.warning("dataset summary failed: %s", exc)
        answer = ""
    return _first_sentence(answer) or _census(trainset)


def _census(trainset: Sequence[Example]) -> str:
    labels: dict[str, set[str]] = {}
    for ex in trainset:
        for k, v in ex.labels.items():
            labels.setdefault(k, set()).add(str(v))
    parts = [f"{k} takes values like {', '.join(sorted(v)[:10])}" for k, v in labels.items()]
    return f"{len(trainset)} examples with inputs {', '.join(trainset[0].inputs)}; " + "; ".join(parts) + "."


def _summary_prompt(records: Sequence[str]) -> str:
    lines = ["Here are examples from a dataset:", ""]
    lines += [record + "\n" for record in records]
    lines.append("A one-sentence summary of what this dataset is about and what the task is:")
    return "\n".join(lines)


def _render_record(record: dict[str, Any], max_chars: int | None = None) -> str:
    return "\n".join(f"{k}: {format_value(v)[:max_chars]}" for k, v in record.items() if k != "augmented")


def _first_sentence(text: str) -> str:
    line = text.strip().splitlines()[0].strip() if text.strip() else ""
    return line.strip("\"' ")[:400]


def proposal_prompt(predictor: Predictor, demos: Sequence[Demo], context: ProposalContext, tip: str,
                    max_value_chars: int | None = None) -> str:
    sig = predictor.rendered_signature
    parts = [f"Task data: {context.dataset_summary}", f"Program: {context.program_summary}",
             (f"This step reads {', '.join(f.prefix for f in sig.inputs)} and writes "
             f"{', '.join(f.prefix for f in sig.outputs)}."), "", "Examples:"]
    parts += [_render_demo(predictor, d, max_value_chars) + "\n" for d in list(demos)[:3]]
    if context.scored:
        parts.append("Instructions tried so far, with their accuracy:")
        parts += [f"- \"{text}\" ({score:.0%})" for text, score in context.scored[-5:]]
        parts.append("")
    if context.failures:
        parts.append("Cases the best instruction so far gets wrong:")
        parts += context.failures[:3]
        parts.append("")
    if TIPS.get(tip):
        parts.append(f"Tip: {TIPS[tip]}")
    parts.append("Write a better instruction for this step in one sentence.")
    parts.append("Instruction:")
    return "\n".join(parts)


def _render_demo(predictor: Predictor, demo: Demo, max_chars: int | None = None) -> str:
    fields = predictor.rendered_signature.fields
    return "\n".join(f"{f.prefix} {format_value(demo[f.name])[:max_chars]}" for f in fields if f.name in demo)


def fitted_proposal_prompt(predictor: Predictor, demos: Sequence[Demo], context: ProposalContext, tip: str,
                           lm: LM) -> str:
    """The fullest proposal prompt that fits the LM's window: fewer demos, then shortened ones, then none, then
    without the failures and with less history, until one fits (the last one is sent regardless)."""
    shown = list(demos)[:3]
    lean = replace(context, failures=[])
    variants = [(shown[:n], context, None) for n in range(len(shown), 0, -1)]
    variants += [(shown[:1], context, SHORTENED_VALUE_CHARS), ([], context, None), ([], lean, None),
                 ([], replace(lean, scored=lean.scored[-1:]), None), ([], replace(lean, scored=[]), None)]
    for variant_demos, variant_context, max_chars in variants:
        prompt = proposal_prompt(predictor, variant_demos, variant_context, tip, max_chars)
        if prompt_fits(lm, prompt, PROPOSAL_TOKENS):
            return prompt
    logger.warning("even the shortest proposal prompt exceeds the context window of %s", lm.config.model)
    return prompt


# "(40%)", and the wordier copies a small model makes of it: "(60% or more)", "(score: 45 %)".
_TRAILING_SCORE = re.compile(r"[\"'`]?\s*\([^()]*\d\s*%[^()]*\)\s*$")


def clean_instruction(answer: str) -> str:
    """The first non-empty line, unquoted; empty when the answer is unusable as an instruction."""
    for line in answer.strip().splitlines():
        line = re.sub(r"^(instruction|new instruction)\s*:\s*", "", line.strip(), flags=re.IGNORECASE)
        # The prompt lists earlier instructions as `- "text" (40%)`; a small model copies the bullet and the
        # score too, and an approver must never read a score inside an instruction.
        line = _TRAILING_SCORE.sub("", re.sub(r"^[-*•]\s+", "", line))
        line = line.strip("\"'` ")
        if len(line) >= 20 and len(line.split()) >= 4:
            return line[:MAX_INSTRUCTION_CHARS]
    return ""


def fallback_instruction(predictor: Predictor, index: int) -> str:
    """A deterministic rewrite used when the proposal LM's answer is unusable (small base models)."""
    base = predictor.signature.instructions.strip().rstrip(".")
    outputs = predictor.signature.outputs
    choices = next((f.choices for f in outputs if f.choices), ())
    variants = [f"{base}. Answer with the {outputs[-1].name.replace('_', ' ')} only."]
    if choices:
        variants.append(f"{base}. The answer must be exactly one of: {', '.join(choices)}.")
        variants.append(f"Read the {predictor.signature.inputs[0].name.replace('_', ' ')} carefully and pick the "
                        f"single best {outputs[-1].name.replace('_', ' ')} from: {', '.join(choices)}.")
    return variants[index % len(variants)]


def propose_instruction(predictor: Predictor, demos: Sequence[Demo], context: ProposalContext, lm: LM,
                        rng: random.Random, index: int, existing: Sequence[str]) -> InstructionCandidate:
    """One proposal-LM call; sampled at temperature 1 with a distinct sample index per candidate."""
    tip = rng.choice(sorted(TIPS))
    prompt = fitted_proposal_prompt(predictor, demos, context, tip, lm)
    try:
        answer = lm.complete(prompt, stop=["\n\n"], max_tokens=PROPOSAL_TOKENS, temperature=1.0,
                             sample=index).text
    except BudgetExceeded:
        raise
    except LMError as exc:
        logger.warning("instruction proposal failed: %s", exc)
        answer = ""
    text = clean_instruction(answer)
    if text and text not in existing:
        return InstructionCandidate(text, "lm", tip)
    return InstructionCandidate(fallback_instruction(predictor, index), "fallback", tip)
