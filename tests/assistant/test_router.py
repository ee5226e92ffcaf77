"""The router with the real embedder, and `medassist route`."""

import json

import pytest
from click.testing import CliRunner

from assistant.cli import main
from assistant.router import Router


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


def test_route_command_prints_json():
    result = CliRunner().invoke(main, ["route", "--json", "side effects of metformin", "what does the liver do"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["route"] for r in rows] == ["medication", "general"]
    assert set(rows[0]["scores"]) == {"diagnosis", "treatment", "medication", "general"}
