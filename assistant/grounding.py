"""Does a cited passage support an answer sentence? A fast check calibrated on labelled pairs.

A sentence counts as supported by a passage when all three hold:
- meaning: its embedding is close to the closest passage sentence (or pair of adjacent sentences);
- numbers: every number it states appears in the passage (doses and thresholds are where small
  models go wrong most often, and embeddings barely see a changed digit);
- polarity: it does not negate what the closest passage sentence says, or the reverse.
The similarity threshold is calibrated by benchmarks/grounding_calibration.py on
benchmarks/data/grounding_pairs.jsonl (results in docs/benchmarks.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

SUPPORT_THRESHOLD = 0.74  # cosine; best accuracy (0.76) and 0.84 precision on the labelled pairs, see docs/benchmarks.md

# "e.g." and "i.e." end no sentence: "(e.g. 10–15 mg modified release twice daily)" stays in its sentence.
_SENTENCE_END = re.compile(r"(?<=[.!?])(?<!\be\.g\.)(?<!\bi\.e\.)\s+(?=[A-Z0-9\[(\"'])|\n+")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_NEGATION = re.compile(r"\b(?:not|no|never|none|without|avoid|avoided|contraindicated|cannot|can't|shouldn't|"
                       r"should not|must not|don't|doesn't|isn't|aren't|unsafe)\b", re.I)
# Emphasis, code and table pipes go; ">" and "#" only where they open a line (a quote, a heading): inside a
# sentence "> 7 mmol/L" is a threshold, and dropping it would misquote the source.
_MARKUP = re.compile(r"[*_`|]+|^\s*[#>]+", re.M)
_LIST_MARK = re.compile(r"^(?:[-•]|\d{1,2}[.)])\s+")


def split_sentences(text: str) -> list[str]:
    """Sentences of a passage or an answer (list items and table rows count as sentences)."""
    parts = (_LIST_MARK.sub("", " ".join(_MARKUP.sub(" ", _joined(p)).split())) for p in _SENTENCE_END.split(text))
    return [p for p in parts if len(p.split()) >= 3]


def _joined(text: str) -> str:
    """Bold letters inside a word stay in the word: "**C**onfusion, **U**rea" -> "Confusion, Urea"."""
    return re.sub(r"\*\*(\w{1,3})\*\*(?=\w)", r"\1", text)


def numbers(text: str) -> set[str]:
    return {n.replace(",", "") for n in _NUMBER.findall(text)}


@dataclass(frozen=True)
class Support:
    supported: bool
    score: float  # cosine similarity to the closest passage sentence(s)
    reason: str  # "" when supported; otherwise what failed


class GroundingChecker:
    def __init__(self, embedder, threshold: float = SUPPORT_THRESHOLD):
        self.embedder = embedder
        self.threshold = threshold

    def check(self, sentence: str, passages: list[str]) -> Support:
        """Is `sentence` supported by at least one of `passages`?"""
        best = Support(False, 0.0, "no passage cited")
        for passage in passages:
            result = self._check_one(sentence, passage)
            if result.supported or result.score > best.score:
                best = result
            if best.supported:
                break
        return best

    def _check_one(self, sentence: str, passage: str) -> Support:
        units = split_sentences(passage)
        units += [f"{a} {b}" for a, b in zip(units, units[1:])]  # a claim may span two sentences
        if not units:
            return Support(False, 0.0, "empty passage")
        vectors = np.asarray(self.embedder.embed([sentence, *units]), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        similarities = vectors[1:] @ vectors[0]
        best = int(similarities.argmax())
        score = float(similarities[best])
        missing = numbers(sentence) - numbers(passage)
        if missing:
            return Support(False, score, f"numbers not in the source: {', '.join(sorted(missing))}")
        if bool(_NEGATION.search(sentence)) != bool(_NEGATION.search(units[best])):
            return Support(False, score, "the source says the opposite")
        if score < self.threshold:
            return Support(False, score, "the source does not say this")
        return Support(True, score, "")
