"""The post-training smoke check: does the tuned model close </think> and stop? Fake generators fix the outcome."""

from __future__ import annotations

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from finetune.data import Example
from finetune.evaluate import SMOKE_MAX_NEW_TOKENS, Generation, generate, smoke_check
from finetune.prompt import THINK_CLOSE, build_prompt

EXAMPLES = [Example("held out question about lisinopril", "ACE inhibitor", "check kidney function"),
            Example("treatment for asthma", "first line", "an inhaler"),
            Example("Fever cough chest pain", "The patient is a 54 year old man with type 2 diabetes. " * 4, "pneumonia")]


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    return AutoTokenizer.from_pretrained(tiny_model)


def test_a_model_that_never_stops_gets_a_stop_share_of_zero_and_the_warning(tokenizer):
    asked = []

    def rambles(prompts, max_new_tokens):  # what the tiny random model does: no EOS, ever
        asked.append((prompts, max_new_tokens))
        return [Generation("blood pressure " * 50, max_new_tokens, stopped=False) for _ in prompts]

    smoke = smoke_check(EXAMPLES, tokenizer, rambles)
    (prompts, budget), = asked
    assert smoke.stopped == 0.0 and smoke.closed_think == 0.0
    assert smoke.prompts == 3 and smoke.mean_tokens == smoke.max_tokens == budget == smoke.max_new_tokens
    assert smoke.warning.startswith(f"WARNING: the tuned model never stopped on 3 held-out prompts: every greedy "
                                    f"generation ran to max_new_tokens={budget}")
    assert "> **WARNING: the tuned model never stopped on 3 held-out prompts: " in smoke.markdown()


def test_a_model_that_stops_at_once_gets_a_stop_share_of_one_and_no_warning(tokenizer):
    def stops(prompts, max_new_tokens):
        return [Generation(f"short\n{THINK_CLOSE}\nanswer", 3, stopped=True) for _ in prompts]

    smoke = smoke_check(EXAMPLES, tokenizer, stops)
    assert smoke.stopped == 1.0 and smoke.closed_think == 1.0 and smoke.mean_tokens == 3
    assert smoke.warning is None and "WARNING" not in smoke.markdown()
    assert f"`{THINK_CLOSE}`" in smoke.markdown()  # a bare </think> would vanish from the rendered card


def test_the_shortest_references_are_asked_with_twice_the_longest_of_them_as_budget(tokenizer):
    asked = []
    smoke_check(EXAMPLES, tokenizer, lambda prompts, budget: asked.append((prompts, budget)) or
                [Generation("", 1, True) for _ in prompts], n=2)
    (prompts, budget), = asked
    assert sorted(prompts) == sorted(build_prompt(e.question) for e in EXAMPLES[:2])  # not the long third one

    def target(e):  # tokens after the prompt: reasoning, </think>, answer and EOS, as in training
        completion = f"{e.reasoning}\n{THINK_CLOSE}\n{e.answer}{tokenizer.eos_token}"
        return len(tokenizer(build_prompt(e.question) + completion)["input_ids"]) - len(
            tokenizer(build_prompt(e.question))["input_ids"])

    assert budget == 2 * max(target(e) for e in EXAMPLES[:2]) <= SMOKE_MAX_NEW_TOKENS


def test_generate_tells_a_run_to_the_budget_from_a_stop_at_eos(tiny_model, tokenizer):
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    prompts = [build_prompt(e.question) for e in EXAMPLES]
    ticks = []
    ran = generate(model, tokenizer, prompts, max_new_tokens=7, batch_size=2,
                   progress=lambda done, total: ticks.append((done, total)))
    assert [(g.stopped, g.new_tokens) for g in ran] == [(False, 7)] * 3  # the tiny model suppresses its EOS
    assert ticks == [(2, 3), (3, 3)]
    # Suppress everything but EOS: greedy decoding must end at the first token, with nothing kept.
    model.generation_config.suppress_tokens = [i for i in range(len(tokenizer)) if i != tokenizer.eos_token_id]
    stopped = generate(model, tokenizer, prompts, max_new_tokens=7, batch_size=2)
    assert [(g.stopped, g.new_tokens, g.text) for g in stopped] == [(True, 0, "")] * 3


def test_rows_with_passages_are_asked_with_their_sources_block(tokenizer):
    from types import SimpleNamespace

    from finetune.prompt import SourceText

    passage = SourceText(1, "Asthma > First line", "An inhaler is first line treatment for asthma.")
    grounded = SimpleNamespace(question="treatment for asthma", reasoning="first line [1]", answer="an inhaler [1]",
                               sources=(passage,))  # duck-typed: Example gains `sources` with the reader data
    asked = []
    smoke_check([grounded], tokenizer, lambda prompts, budget: asked.extend(prompts) or
                [Generation("", 1, True) for _ in prompts])
    assert asked == [build_prompt(grounded.question, [passage])] and "### Sources:\n[1] Asthma > First line" in asked[0]
