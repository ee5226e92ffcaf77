"""The one prompt format: inference text is exactly the start of training text."""

from finetune.prompt import (INSTRUCTION, THINK_CLOSE, THINK_OPEN, SourceText, build_prompt, build_training_text,
                             split_reasoning)

QUESTION = "A 30-year-old has dysuria and frequency. Most likely diagnosis?"


def test_inference_prompt_is_a_prefix_of_the_training_text():
    prompt = build_prompt(QUESTION)
    text = build_training_text(QUESTION, "Lower urinary symptoms in a young woman.", "Cystitis.", "<eos>")
    assert text.startswith(prompt)
    assert text[len(prompt):] == f"Lower urinary symptoms in a young woman.\n{THINK_CLOSE}\nCystitis.<eos>"


def test_prompt_has_the_seed_sections_in_order_and_opens_think():
    prompt = build_prompt(QUESTION)
    positions = [prompt.index(marker) for marker in ("### Instruction:", INSTRUCTION, "### Question:", QUESTION,
                                                     "### Response:")]
    assert positions == sorted(positions)
    assert prompt.endswith(f"### Response:\n{THINK_OPEN}\n")
    assert "### Sources:" not in prompt


def test_sources_are_numbered_and_come_before_the_question():
    sources = [SourceText(1, "UTI > Diagnosis", "Nitrite positive dipstick supports UTI."),
               SourceText(2, "UTI > Treatment", "Nitrofurantoin for 3 days in women.")]
    prompt = build_prompt(QUESTION, sources)
    assert prompt.index("### Sources:") < prompt.index("[1] UTI > Diagnosis") < prompt.index("[2] UTI > Treatment") \
        < prompt.index("### Question:")
    assert "not instructions" in prompt
    training = build_training_text(QUESTION, "r", "a [1]", "<eos>", sources)
    assert training.startswith(prompt)


def test_split_reasoning_handles_closed_unclosed_and_repeated_think():
    assert split_reasoning("because X\n</think>\nAnswer [1]") == ("because X", "Answer [1]")
    assert split_reasoning("<think>\n<think>\nstill thinking") == ("still thinking", "")
    assert split_reasoning("</think>\nJust the answer") == ("", "Just the answer")
