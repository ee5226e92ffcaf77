"""Medical safety: red-flag detection, the disclaimer, and keeping retrieved text from acting as instructions."""

from __future__ import annotations

import re
from dataclasses import dataclass

DISCLAIMER = ("Decision support for health professionals and learners, not a diagnosis or a substitute for "
              "clinical judgement. Check against current local guidance.")
EMERGENCY_NOTICE = ("Possible emergency: {flags}. If this is happening now, call your local emergency number "
                    "(999 / 112 / 911) or go to the nearest emergency department. Do not wait for this answer.")
# Retrieval reads a question's first 128 word pieces anyway, and the chat's box holds no more than this; a longer
# question (a file pasted by mistake) is refused with a reason, not read for minutes by every regex on the way.
MAX_QUESTION_CHARS = 4000


class QuestionError(ValueError):
    """A question that cannot be asked (empty, or longer than MAX_QUESTION_CHARS); the message says why."""


def check_question(question: str) -> str:
    """The question without surrounding blanks, or QuestionError saying why it cannot be asked."""
    question = question.strip()
    if not question:
        raise QuestionError("the question is empty")
    if len(question) > MAX_QUESTION_CHARS:
        raise QuestionError(f"the question is {len(question):,} characters long; at most {MAX_QUESTION_CHARS:,} "
                            "are read: ask it in fewer words")
    return question


@dataclass(frozen=True)
class RedFlag:
    name: str
    # every group must match somewhere in the text (each group is a set of alternatives)
    groups: tuple[str, ...]


_CHEST = r"chest (?:pain|tightness|pressure|discomfort)|crushing pain|pain in (?:my|his|her|the) chest"
RED_FLAGS = (
    RedFlag("chest pain with sweating, breathlessness or radiation",
            (_CHEST, r"sweat|diaphore|clammy|radiat|spread(?:s|ing)? to|(?:left )?arm|jaw|short(?:ness)? of breath|breathless|faint")),
    RedFlag("stroke signs", (r"droop|slurred|(?:speech|words?) (?:is |are )?slurred|can'?t (?:speak|talk|find (?:the|my) words)|"
                             r"arm (?:is )?(?:weak|numb)|sudden(?:ly)? (?:weak|numb|confus|blind|los)|"
                             r"one side of (?:the|my|his|her) (?:body|face)",)),
    RedFlag("anaphylaxis", (r"anaphyla|throat (?:closing|swelling|tight)|swollen (?:tongue|lips|throat)|tongue swell|"
                            r"lips? swell|(?:wheez|can'?t breathe|difficulty breathing).*(?:allerg|sting|peanut|nut|bee)|"
                            r"(?:allerg|sting|peanut|bee).*(?:wheez|can'?t breathe|difficulty breathing|swell)",)),
    RedFlag("suicidal thoughts or self-harm", (r"suicid|kill (?:my|him|her)self|end (?:my|his|her) life|"
                                               r"want to die|self[- ]harm|overdos(?:e|ed) on purpose|no reason to live",)),
    RedFlag("sepsis signs", (r"sepsis|septic|(?:fever|temperature|rigors|shivering).*(?:confus|mottled|not passing urine|"
                             r"very fast breathing|low blood pressure|drowsy|hypotens)|"
                             r"(?:confus|mottled|hypotens|low blood pressure).*(?:fever|infection|temperature)",)),
    RedFlag("meningitis signs", (r"(?:stiff neck|neck stiffness|photophobia|light hurts)",
                                 r"fever|rash|headache|vomit")),
    RedFlag("severe bleeding", (r"vomiting blood|coughing up (?:lots of )?blood|haematemesis|hematemesis|black tarry|"
                                r"bleeding (?:heavily|won'?t stop|that will not stop)|massive bleed",)),
    RedFlag("sudden severe headache", (r"worst headache|thunderclap|sudden severe headache",)),
    RedFlag("breathing difficulty", (r"can'?t breathe|cannot breathe|struggling to breathe|blue lips|cyanos",)),
    RedFlag("unresponsive or seizing", (r"unresponsive|unconscious|won'?t wake|seizure (?:lasting|for (?:more|over))|"
                                        r"fitting for",)),
)


def find_red_flags(text: str) -> list[str]:
    """Names of the red flags that `text` raises (empty when none)."""
    lowered = " ".join(text.lower().split())
    return [flag.name for flag in RED_FLAGS if all(re.search(group, lowered) for group in flag.groups)]


def emergency_notice(flags: list[str]) -> str | None:
    return EMERGENCY_NOTICE.format(flags="; ".join(flags)) if flags else None


# Retrieved text is data. These patterns would let a document fake the prompt's structure or speak
# with a system voice; they are neutralised before the text reaches the model.
_HIDDEN = re.compile(r"<!--.*?-->|<\s*(script|style)[^>]*>.*?<\s*/\s*\1\s*>", re.S | re.I)
_ROLE_LINE = re.compile(r"^\s*(?:#{1,6}\s*)?(system|assistant|user|instruction|instructions|developer|"
                        r"response|question|sources?)\s*:", re.I | re.M)
_THINK = re.compile(r"</?\s*think\s*>", re.I)
INJECTION = re.compile(
    r"ignore (?:all |any )?(?:the )?(?:previous|prior|above|earlier) (?:instructions|prompts?|rules)|"
    r"disregard (?:all |the )?(?:previous|prior|above) |you are now |new instructions?:|"
    r"reveal (?:your|the) (?:system )?prompt|print (?:your|the) (?:system )?prompt|"
    r"(?:output|include|add|insert) (?:this|the following)? ?(?:url|link)", re.I)


def sanitize_passage(text: str) -> str:
    """Retrieved text made safe to quote: hidden markup removed, fake role lines and prompt markers defused."""
    text = _HIDDEN.sub(" ", text)
    text = _THINK.sub(" ", text)
    text = _ROLE_LINE.sub(lambda m: f"(quoted) {m.group(1)} -", text)
    return re.sub(r"^#{1,6}\s*", "", text, flags=re.M)  # no markdown heading can pose as "### Question:"


def looks_like_injection(text: str) -> bool:
    """True when a passage addresses the model rather than the reader; such sentences are never cited."""
    return bool(INJECTION.search(text))
