"""The grounding check with the real embedder: paraphrases pass, changed numbers and negations do not."""

import pytest

from assistant.grounding import GroundingChecker, split_sentences

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


def test_sentence_splitting_handles_lists_and_markup():
    assert split_sentences("**Dose:** 5 mg daily.\n- Check INR weekly for a month.\n- Ok") == [
        "Dose: 5 mg daily.", "Check INR weekly for a month."]
    assert split_sentences("Start low (e.g. 10 mg twice daily), i.e. Half the usual dose. Review in a week.") == [
        "Start low (e.g. 10 mg twice daily), i.e. Half the usual dose.", "Review in a week."]  # no end at "e.g."
