"""The router with the real embedder, and `medassist route`."""

import json
from collections import Counter

import pytest
from click.testing import CliRunner

from assistant.cli import main
from assistant.router import MIN_QUESTIONS, MODEL_FILE, TRAINING_FILE, Router, _terms


@pytest.fixture(scope="module")
def router(embedder):
    return Router(embedder)


@pytest.mark.parametrize("question, route", [
    ("What is the maximum daily dose of paracetamol for an adult?", "medication"),
    ("Can I take ibuprofen with lisinopril?", "medication"),
    ("How is COPD confirmed on spirometry?", "diagnosis"),
    ("A 25-year-old woman has dysuria and frequency for two days. What is the most likely diagnosis?", "diagnosis"),
    ("What is the first-line management of community-acquired pneumonia in hospital?", "treatment"),
    ("How common is atrial fibrillation in people over 80?", "general"),
])
def test_clear_questions_are_routed(router, question, route):
    predicted, confidence = router.route(question)
    assert predicted == route
    assert 0.25 < confidence <= 1.0


# Written for this test, not in the router's training file. The old router sent questions like the first
# four to medication because they name drugs; they ask which treatment to choose.
@pytest.mark.parametrize("question, route", [
    ("Metformin isn't controlling her sugars any more — which add-on would you pick given her heart failure?",
     "treatment"),
    ("Should an 84-year-old with AF be started on apixaban, or is aspirin enough?", "treatment"),
    ("Nitrofurantoin didn't clear her cystitis — which antibiotic should be tried next?", "treatment"),
    ("Ramipril has given him a dry cough: losartan or something else?", "treatment"),
    ("What dose of ramipril suits a patient with heart failure and an eGFR of 30?", "medication"),
    ("My dad has atrial fibrillation and kidney problems — how much rivaroxaban should he take?", "medication"),
    ("Child with asthma, 18 kg: how much prednisolone a day in an attack?", "medication"),
])
def test_drug_named_in_a_treatment_choice_and_condition_named_in_a_dose_question(router, question, route):
    assert router.route(question)[0] == route


def test_scores_are_probabilities(router):
    scores = router.scores("side effects of metformin")
    assert set(scores) == {"diagnosis", "treatment", "medication", "general"}
    assert sum(scores.values()) == pytest.approx(1.0, abs=1e-5)
    assert router.route("side effects of metformin") == ("medication", pytest.approx(scores["medication"]))


def test_model_was_fitted_on_the_training_file():
    """The stored vocabulary is the one `python -m assistant.router` builds from route_training.jsonl: a stale
    model (questions edited, model not refitted) fails here."""
    rows = [json.loads(line) for line in TRAINING_FILE.read_text(encoding="utf-8").splitlines() if line.strip()]
    counts = Counter(term for row in rows for term in _terms(row["question"]))
    model = json.loads(MODEL_FILE.read_text(encoding="utf-8"))
    assert model["vocabulary"] == sorted(t for t, n in counts.items() if n >= MIN_QUESTIONS)
    assert {row["route"] for row in rows} == {"diagnosis", "treatment", "medication", "general"}


def test_route_command_prints_json():
    result = CliRunner().invoke(main, ["route", "--json", "side effects of metformin", "what does the liver do"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["route"] for r in rows] == ["medication", "general"]
    assert set(rows[0]["scores"]) == {"diagnosis", "treatment", "medication", "general"}
