"""Prompts that fit: demo sets cut to the model's context window before the search uses them.

A prompt that outgrows the window is refused by the server; each refusal used to be scored as a wrong answer
(issue 19: 181 of 453 calls failed on 2,000-character texts with up to 9 demos in a 4,096-token window). So
every demo set is checked against a budget: the context window (`LM.context_window`) minus the answer's
max_tokens, a margin, the longest instruction a candidate may have, and the longest input of the dataset. A
set that does not fit loses its longest demos first, one class at a time so that a balanced set stays
balanced, until it fits; the reduction is logged and recorded in the set's metadata (`DemoSet.metadata["fit"]`).

Input tokens are also the run's cost (issue 19: ours used 1.6x DSPy's prompt tokens on long news texts with 16
demos), so the demos of one prompt have a token cap too (`MIPROConfig.max_demo_tokens`): short texts keep every
demo the counts ask for, long ones keep fewer. The cap cuts the count, not the length: a set keeps its longest
prefix within the cap. Sets are ordered so that every prefix is balanced (bootstrap.balanced_order), and a prefix
keeps demos of the lengths the data has, where dropping the longest first leaves only the shortest, least typical
texts. (Only the context window, which must be met, drops the longest demos first.)

Token counts are `LM.count_tokens` estimates: litellm's tokenizer when litellm knows the model, else
characters / 3, which overestimates (English runs about 4 characters per token in common tokenizers).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from optimizer.adapters import Adapter, LMRequest, adapter_for, render_fields
from optimizer.bootstrap import DemoSet, label_key
from optimizer.data import Example
from optimizer.program import Demo, Predictor, Program

if TYPE_CHECKING:
    from optimizer.lm import LM

logger = logging.getLogger(__name__)

MAX_INSTRUCTION_CHARS = 600  # proposal.clean_instruction cuts proposed instructions here
PER_MESSAGE_TOKENS = 4       # chat templates wrap every message in a few role/separator tokens
SAFETY_TOKENS = 16           # BOS/EOS and the like, which no estimate of the text itself sees
UNLIMITED = 2**31 - 1        # the prompt budget when neither a window nor a prompt cap is known


@dataclass(frozen=True)
class PromptFitter:
    """Checks and trims one program's demos against the model's context window and an optional token cap.

    Attributes:
        lm: The task LM (its tokenizer estimate and default max_tokens).
        context_window: Tokens the model accepts, prompt and answer together; None when unknown.
        longest_inputs: Per predictor, the input values that render the longest query in the dataset (inputs an
            earlier predictor produces are stood in for by an answer of max_tokens words).
        adapter: How prompts are rendered for this LM.
        max_prompt_tokens: A cost cap on every prompt (MIPROConfig.max_prompt_tokens); None for none.
        max_demo_tokens: A cost cap on the demos of a prompt (MIPROConfig.max_demo_tokens); None for none.
    """

    lm: LM
    context_window: int | None
    longest_inputs: dict[str, dict[str, Any]]
    adapter: Adapter
    max_prompt_tokens: int | None = None
    max_demo_tokens: int | None = None

    @classmethod
    def for_program(cls, program: Program, examples: Sequence[Example], lm: LM, adapter: Adapter | None = None,
                    *, max_prompt_tokens: int | None = None,
                    max_demo_tokens: int | None = None) -> PromptFitter | None:
        """A fitter for `program` on `examples`; None when there is nothing to fit to (no known context window
        and no token cap)."""
        window = lm.context_window()
        if window is None and max_prompt_tokens is None and max_demo_tokens is None:
            logger.info("context window of %s unknown: demo sets are not fitted to it", lm.config.model)
            return None
        produced = " ".join(["word"] * lm.config.max_tokens)  # an earlier predictor's longest possible answer
        longest = {p.name: _longest_inputs(p, examples, produced) for p in program.predictors}
        return cls(lm, window, longest, adapter or adapter_for(lm.is_chat), max_prompt_tokens, max_demo_tokens)

    def prompt_tokens(self, predictor: Predictor, demos: Sequence[Demo]) -> int:
        """Estimated tokens of the longest prompt `predictor` sends with `demos` (longest input, and room for
        the longest instruction a candidate may get)."""
        instructions = predictor.instructions
        reserve = instruction_reserve(predictor)
        if len(instructions) < reserve:
            instructions += " " + "x" * (reserve - len(instructions))
        probe = predictor.with_instructions(instructions).with_demos(list(demos))
        request = self.adapter.format(probe, self.longest_inputs[predictor.name])
        return self.lm.count_tokens(_request_text(request)) + PER_MESSAGE_TOKENS * len(request.messages or ())

    def budget(self, predictor: Predictor) -> int:
        """Prompt tokens allowed: the window minus the answer's max_tokens and a margin, and at most
        `max_prompt_tokens`."""
        limits = [] if self.max_prompt_tokens is None else [self.max_prompt_tokens]
        if self.context_window is not None:
            answer = self.adapter.format(predictor, self.longest_inputs[predictor.name]).max_tokens
            limits.append(self.context_window - (answer or self.lm.config.max_tokens) - SAFETY_TOKENS)
        return min(limits, default=UNLIMITED)

    def demo_tokens(self, predictor: Predictor, demos: Sequence[Demo]) -> int:
        """Estimated tokens the demos add to a prompt (each rendered as the adapter shows it)."""
        fields = predictor.rendered_signature.fields
        return sum(self.lm.count_tokens(render_fields(fields, d)) for d in demos)

    def fit(self, predictor: Predictor, demos: Sequence[Demo]) -> list[Demo]:
        """`demos` cut to the token caps and the window: the longest prefix within the demo cap, then without
        the fewest, longest demos needed to fit the prompt budget; order kept, classes kept balanced."""
        kept = list(demos)
        budget = self.budget(predictor)
        fields = predictor.rendered_signature.fields
        sizes = {id(d): self.lm.count_tokens(render_fields(fields, d)) for d in kept}
        if self.max_demo_tokens is not None:
            kept = _prefix_within(kept, sizes, self.max_demo_tokens)
        while kept and self.prompt_tokens(predictor, kept) > budget:
            kept.remove(_next_to_drop(predictor, kept, sizes))
        if not kept and self.prompt_tokens(predictor, kept) > budget:
            logger.warning("predictor %s: the longest input alone (%d tokens) exceeds the prompt budget of %d "
                           "tokens (context window %s)", predictor.name, self.prompt_tokens(predictor, kept),
                           budget, self.context_window)
        return kept

    def fit_set(self, predictor: Predictor, demo_set: DemoSet) -> DemoSet:
        """The set cut to fit, with the reduction recorded in its metadata and logged; unchanged if it fits."""
        kept = self.fit(predictor, demo_set.demos)
        dropped = len(demo_set.demos) - len(kept)
        if not dropped:
            return demo_set
        budget = self.budget(predictor)
        logger.info("predictor %s: demo set %r cut from %d to %d demos to fit the demo cap of %s tokens and the "
                    "prompt budget of %s (context window %s, %s estimate)", predictor.name, demo_set.source,
                    len(demo_set.demos), len(kept), self.max_demo_tokens, budget if budget < UNLIMITED else None,
                    self.context_window, self.lm.token_estimator)
        fit = {"context_window": self.context_window, "max_prompt_tokens": self.max_prompt_tokens,
               "max_demo_tokens": self.max_demo_tokens, "prompt_budget": budget, "estimator": self.lm.token_estimator,
               "demos_before": len(demo_set.demos), "dropped": dropped}
        return replace(demo_set, demos=tuple(kept), metadata={**demo_set.metadata, "fit": fit})

    def fit_sets(self, program: Program, demo_sets: dict[str, list[DemoSet]]) -> dict[str, list[DemoSet]]:
        return {p.name: [self.fit_set(p, s) for s in demo_sets[p.name]] for p in program.predictors}


def instruction_reserve(predictor: Predictor) -> int:
    """Characters any instruction candidate may take: a proposed one is cut at MAX_INSTRUCTION_CHARS, and a
    fallback one (proposal.fallback_instruction) is the original plus a sentence naming the fields and choices."""
    signature = predictor.signature
    choices = ", ".join(c for f in signature.outputs for c in f.choices)
    names = sum(len(f.name) for f in signature.fields)
    return max(MAX_INSTRUCTION_CHARS, len(signature.instructions) + 80 + names + len(choices))


def prompt_fits(lm: LM, prompt: str, max_tokens: int) -> bool:
    """Whether a raw prompt and an answer of `max_tokens` fit the LM's context window (True when unknown)."""
    window = lm.context_window()
    overhead = SAFETY_TOKENS + (PER_MESSAGE_TOKENS if lm.is_chat else 0)  # a chat model gets it as one message
    return window is None or lm.count_tokens(prompt) + max_tokens + overhead <= window


def _prefix_within(demos: list[Demo], sizes: dict[int, int], cap: int) -> list[Demo]:
    """The longest prefix of `demos` whose tokens add up to at most `cap`."""
    total = 0
    for index, demo in enumerate(demos):
        total += sizes[id(demo)]
        if total > cap:
            return demos[:index]
    return demos


def _next_to_drop(predictor: Predictor, demos: list[Demo], sizes: dict[int, int]) -> Demo:
    """The longest demo of the most frequent class (the longest overall among tied classes): dropping it keeps
    a balanced set balanced while removing as many tokens as balance allows. Bootstrapped demos go last: a
    teacher's trace that passed the metric is worth more than a labeled row."""
    counts = Counter(label_key(predictor, d) for d in demos)
    most = max(counts.values())
    candidates = [d for d in demos if counts[label_key(predictor, d)] == most]
    return max(candidates, key=lambda d: (not d.get("augmented"), sizes.get(id(d), 0)))


def _longest_inputs(predictor: Predictor, examples: Sequence[Example], produced: str) -> dict[str, Any]:
    """The input values of the example whose rendered query is longest (earlier outputs stood in for)."""
    inputs_of = [{n: ex.inputs.get(n, produced) for n in predictor.signature.input_names} for ex in examples]
    if not inputs_of:
        return {n: produced for n in predictor.signature.input_names}
    return max(inputs_of, key=lambda values: len(render_fields(predictor.signature.inputs, values)))


def _request_text(request: LMRequest) -> str:
    if request.messages is not None:
        return "\n".join(m["content"] for m in request.messages)
    return request.prompt or ""
