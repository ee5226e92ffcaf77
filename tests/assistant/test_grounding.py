"""The grounding check with the real embedder: paraphrases pass, changed numbers and negations do not."""

import pytest

from assistant.grounding import GroundingChecker, quotable_sentences, split_sentences

PASSAGE = ("Apixaban is given at 5 mg twice daily for stroke prevention in atrial fibrillation. The dose is "
           "reduced to 2.5 mg twice daily when two of these apply: age 80 or over, weight 60 kg or less, or "
           "creatinine 133 micromol/L or more. It is not used in people with mechanical heart valves.")


@pytest.fixture(scope="module")
def checker(embedder):
    return GroundingChecker(embedder)


def test_close_restatement_is_supported(checker):
    result = checker.check("For stroke prevention in atrial fibrillation apixaban is given at 5 mg twice daily.", [PASSAGE])
    assert result.supported, result


def test_changed_number_is_unsupported(checker):
    result = checker.check("Apixaban is given at 10 mg twice daily for stroke prevention in atrial fibrillation.", [PASSAGE])
    assert not result.supported and "10" in result.reason


def test_negated_claim_is_unsupported(checker):
    result = checker.check("Apixaban is used in people with mechanical heart valves.", [PASSAGE])
    assert not result.supported


def test_unrelated_claim_is_unsupported(checker):
    assert not checker.check("Metformin can cause vitamin B12 deficiency.", [PASSAGE]).supported


def test_a_list_lead_in_is_quoted_only_in_front_of_its_items():
    text = ("Consider admission when any of the following is present:\n\n- oxygen saturation below 92%;\n"
            "- new confusion or drowsiness.\n\n| CURB-65 score | Place of care |\n|---|---|\n"
            "| 0 or 1 | at home |\n\nOtherwise treat at home. Review in 48 hours.")
    assert quotable_sentences(text) == [
        "Consider admission when any of the following is present: oxygen saturation below 92%;",
        "Consider admission when any of the following is present: new confusion or drowsiness.",
        "CURB-65 score Place of care", "0 or 1 at home",  # a table with no lead-in of its own; no rule line
        "Otherwise treat at home.", "Review in 48 hours."]
    nested = "- Chest X-ray to confirm it.\n- For moderate or high severity:\n  - blood and sputum cultures;\n" \
             "  - urinary antigen tests.\n- Give antibiotics within 4 hours."
    assert quotable_sentences(nested) == [
        "Chest X-ray to confirm it.", "For moderate or high severity: blood and sputum cultures;",
        "For moderate or high severity: urinary antigen tests.", "Give antibiotics within 4 hours."]


def test_sentence_splitting_handles_lists_and_markup():
    assert split_sentences("**Dose:** 5 mg daily.\n- Check INR weekly for a month.\n- Ok") == [
        "Dose: 5 mg daily.", "Check INR weekly for a month."]
