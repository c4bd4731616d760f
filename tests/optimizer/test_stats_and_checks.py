"""The paired comparison behind "recommended", and the automatic candidate checks reviewers see."""

from __future__ import annotations

import math

import pytest

from optimizer import Program, check_candidate, compare_paired
from optimizer.stats import mcnemar_one_sided, paired_standard_error

LABELS = ["billing", "refund", "shipping"]


def program(instructions: str, demos: list[dict] | None = None) -> Program:
    return Program.from_dict({"name": "triage", "predictors": [{
        "name": "classify", "kind": "predict", "demos": demos or [],
        "signature": {"instructions": instructions,
                      "inputs": [{"name": "ticket", "type": "str"}],
                      "outputs": [{"name": "category", "type": "choice", "choices": LABELS}]}}]})


# --- paired comparison ----------------------------------------------------------------------------------------


def test_mcnemar_is_the_exact_binomial_tail_of_the_discordant_pairs():
    assert mcnemar_one_sided(0, 0) == 1.0
    assert mcnemar_one_sided(5, 0) == pytest.approx(1 / 32)
    assert mcnemar_one_sided(6, 2) == pytest.approx(sum(math.comb(8, k) for k in range(6, 9)) / 2 ** 8)


def test_a_tie_is_never_a_significant_gain():
    same = [1, 0, 1, 1, 0] * 12
    result = compare_paired(same, same)
    assert (result.p_value, result.delta, result.significant_gain) == (1.0, 0.0, False)
    assert result.method == "exact McNemar (one-sided)" and result.ties == 60


def test_a_small_gain_on_few_rows_is_chance_and_a_clear_one_is_not():
    baseline = [0] * 60
    noise = [1, 1] + [0] * 58  # two more right out of 60: the "60-row validation gain" of the issue
    assert compare_paired(noise, baseline).significant_gain is False
    clear = [1] * 10 + [0] * 50
    result = compare_paired(clear, baseline)
    assert result.significant_gain is True and result.p_value == pytest.approx(2 ** -10)
    assert (result.wins, result.losses, result.examples) == (10, 0, 60)
    assert result.ci_low > 0 and result.ci_high <= 1


def test_a_worse_candidate_is_not_recommended_however_sure():
    assert compare_paired([0] * 30, [1] * 30).significant_gain is False


def test_graded_scores_use_a_seeded_permutation_test():
    candidate, baseline = [0.6, 0.8, 0.9] * 10, [0.5, 0.8, 0.7] * 10
    first, again = compare_paired(candidate, baseline), compare_paired(candidate, baseline)
    assert first == again and first.method == "paired sign-flip permutation (one-sided)"
    assert first.significant_gain is True and first.delta == pytest.approx(0.1)


def test_unpaired_inputs_are_refused():
    with pytest.raises(ValueError, match="paired scores need the same examples, but got 2 and 3"):
        compare_paired([1, 0], [1, 0, 1])
    with pytest.raises(ValueError, match="at least one example"):
        compare_paired([], [])


# --- candidate checks -------------------------------------------------------------------------------------------


def codes(findings) -> list[str]:
    return [f.code for f in findings]


def test_a_clean_candidate_has_no_findings():
    base = program("Classify the ticket as billing, refund or shipping.")
    candidate = program("Read the ticket and answer billing, refund or shipping.",
                        demos=[{"ticket": "I was charged twice", "category": "billing"}])
    assert check_candidate(candidate, base, [{"ticket": "I was charged twice", "category": "billing"}]) == []


def test_an_instruction_that_stops_naming_the_labels_is_flagged():
    base = program("Classify the ticket as billing, refund or shipping.")
    findings = check_candidate(program("Classify the ticket."), base)
    assert codes(findings) == ["labels_dropped"]
    assert findings[0].message == ("the instruction no longer names the category label(s) billing, refund, "
                                   "shipping, which production's instruction names")


@pytest.mark.parametrize(("text", "code"), [
    ("   ", "empty_instruction"),  # ("" itself becomes the signature's default instruction when parsed)
    ("Classify the ticket into one of the", "truncated_instruction"),
    ("Classify the ticket (billing, refund", "truncated_instruction"),
    ("Classify the ticket, billing or refund or shipping,", "truncated_instruction"),
    ("Classify the ticket (score: 83.5%) as billing, refund or shipping.", "score_text"),
    ("Best minibatch accuracy so far. Answer billing, refund or shipping.", "score_text"),
])
def test_empty_truncated_and_score_leaking_instructions(text, code):
    assert code in codes(check_candidate(program(text)))


def test_demos_that_contradict_the_labeled_data_or_the_labels_are_errors():
    candidate = program("Answer billing, refund or shipping.", demos=[
        {"ticket": "I was  charged twice", "category": "refund"},   # the data says billing for this ticket
        {"ticket": "Where is it?", "category": "lost"},              # not a label at all
        {"ticket": "Brand new ticket", "category": "shipping"}])    # not in the data: nothing to contradict
    records = [{"ticket": "I was charged twice", "category": "billing"}]
    findings = check_candidate(candidate, None, records)
    assert codes(findings) == ["demo_contradicts_data", "demo_label_unknown"]
    assert findings[0].severity == "error"
    assert findings[0].message == ("demo 1: category is 'refund', but the labeled data says 'billing' for the "
                                   "same input")
    assert findings[1].message == "demo 2: category 'lost' is not one of the labels"


def test_the_paired_standard_error_is_that_of_the_mean_difference():
    # differences 1, 0, 0, -1: mean 0, sample variance 2/3, so the mean's standard error is sqrt(2/3 / 4)
    assert paired_standard_error([1, 1, 0, 0], [0, 1, 0, 1]) == pytest.approx(math.sqrt(2 / 3 / 4))
    assert paired_standard_error([1, 0, 1], [1, 0, 1]) == 0.0, "the same answers: no noise between them"
    assert paired_standard_error([1], [0]) == 0.0
    with pytest.raises(ValueError):
        paired_standard_error([1, 0], [1])
