"""Route a question to diagnosis, treatment, medication or general, offline and in milliseconds.

A small softmax (multinomial logistic) regression over three kinds of feature of the question:
- its MiniLM embedding (the model the index already loaded, so no extra model);
- counts of cue rules: drug names and drug-name stems, dose and side-effect words (medication);
  "diagnose", "test", "most likely" (diagnosis); "manage", "first-line", a choice between treatments
  (treatment); "how common", "prognosis" (general);
- which words and word pairs it holds, of those in two or more training questions ("or", "add", "dose of").
The weights are fitted on `route_training.jsonl` (1,159 questions written for the router, in
many styles: clinical, shorthand, handover notes, carers' and patients' words, vignettes, typos) and
stored in `route_model.json`. Refit after changing the questions or the features:
    .venv/bin/python -m assistant.router
It prints the 5-fold cross-validated accuracy. The old prototype-similarity router, with hand-set cue
weights, reached 0.80 on questions written apart from it: a drug named in a question about the choice
of treatment pulled it to medication. Learned weights see that "ramipril or losartan?" asks what to do
while "dose of ramipril in CKD?" asks about the drug (docs/benchmarks.md has the numbers).
"""

from __future__ import annotations

import json
import re
from functools import cached_property
from pathlib import Path

import numpy as np

from corpus import ROUTES

TRAINING_FILE = Path(__file__).with_name("route_training.jsonl")
MODEL_FILE = Path(__file__).with_name("route_model.json")

# Drug-name stems (INN suffixes) and common drugs whose names carry no stem.
# The leading \b keeps the count the same and the search linear: without it every start inside a long word was tried.
DRUG_STEMS = (r"\b\w+(?:pril|sartan|olol|dipine|statin|gliflozin|glutide|gliptin|xaban|gatran|parin|prazole|tidine|"
              r"cillin|mycin|floxacin|cycline|azole|vir|mab|nib|setron|triptan|lukast|terol|sonide|metasone|"
              r"azepam|azolam|oxetine|aline|pramine|triptyline|peridol|apine|idone|profen|coxib|fenac|thiazide|"
              r"semide|tretinoin|caine|curium|dronate|parib|lutamide|relin)\b")
DRUG_NAMES = (r"\b(?:metformin|insulin|warfarin|aspirin|clopidogrel|ticagrelor|prasugrel|digoxin|amiodarone|"
              r"furosemide|spironolactone|indapamide|paracetamol|acetaminophen|ibuprofen|naproxen|codeine|tramadol|"
              r"morphine|oxycodone|fentanyl|naloxone|lithium|levothyroxine|prednisolone|prednisone|hydrocortisone|"
              r"dexamethasone|methotrexate|allopurinol|colchicine|gabapentin|pregabalin|sertraline|citalopram|"
              r"fluoxetine|mirtazapine|venlafaxine|duloxetine|amitriptyline|diazepam|salbutamol|albuterol|"
              r"tiotropium|nitrofurantoin|trimethoprim|doxycycline|amoxicillin|amoxicilin|co-amoxiclav|cefalexin|"
              r"ceftriaxone|vancomycin|gentamicin|apixaban|rivaroxaban|dabigatran|edoxaban|heparin|enoxaparin|"
              r"alteplase|tenecteplase|adrenaline|epinephrine|atropine|sildenafil|tamsulosin|finasteride|mirabegron|"
              r"oxybutynin|sumatriptan|ondansetron|metoclopramide|omeprazole|lansoprazole|bisoprolol|atenolol|"
              r"propranolol|ramipril|lisinopril|amlodipine|losartan|simvastatin|atorvastatin|rosuvastatin|sglt2|"
              r"glp-?1|doacs?|ssris?|snris?|nsaids?|ppi|ace ?inhibitors?|arbs?|statins?|antibiotics?|"
              r"beta[- ]?blockers?|diuretics?|anticoagulants?|antidepressants?|opioids?|steroids?|inhalers?|"
              r"brentuximab|bleomycin|doxorubicin|abvd|beacopp|semaglutide|liraglutide|empagliflozin|"
              r"dapagliflozin)\b")
# A choice between treatments: "which drug should we start", "switch from ramipril to what", "add-on to metformin".
# Such a question names drugs but asks what to do; the fitted weights learn how much that outweighs the names.
CHOICE = (r"\b(?:which (?:drug|antibiotic|agent|medicine|medication|inhaler|treatment|option|class)|what (?:to|should "
          r"(?:i|we|be)) (?:start|add|give|use|try|switch)|add[- ]on|add(?:ed|ing)? (?:in|on)?|instead(?: of)?|"
          r"alternative|switch\w*(?: to)?|step(?:ped)? up|first[- ]line|1st[- ]line|next step|best (?:option|choice)|"
          r"start(?:ed|ing)? (?:on|with)|(?:better|preferred) than)\b")
CUES = [  # each pattern's count (at most 2) is one feature; the route beside it says what it was written for
    ("medication", DRUG_STEMS), ("medication", DRUG_NAMES),
    ("medication", r"\b(?:dose|doses|dosing|dosage|mg|mcg|micrograms?|units?/kg|tablets?|pills?|side[- ]effects?|"
                   r"adverse|interact\w*|contraindicat\w*|overdose|max(?:imum)? (?:daily )?dose|titrat\w*|taper\w*|"
                   r"take .* with|safe (?:in|during|to take|with)|switch\w* (?:from|to)|renal dosing|levels?|"
                   r"monitor\w*|prescrib\w*|medicines?|medications?|drugs?)\b"),
    ("diagnosis", r"\b(?:diagnos\w*|most likely|likely cause|differential|test(?:s|ing)?|investigat\w*|criteria|"
                  r"score|scoring|stag(?:e|es|ing)|confirm\w*|interpret\w*|findings?|signs?|symptoms?|"
                  r"present(?:s|ed|ing) with|work-?up|screen\w*|biopsy|ecg|x-?ray|ct|mri|ultrasound|blood test|"
                  r"what(?:'s| is) wrong|recogni[sz]e|tell .* apart|distinguish|raised|elevated|low|high|"
                  r"urodynamic\w*)\b"),
    ("treatment", r"\b(?:treat\w*|manag\w*|therap\w*|first[- ]line|second[- ]line|next (?:best )?step|surgery|"
                  r"surgical|operation|procedure|lifestyle|exercise|physiotherapy|rehab\w*|cure|control|"
                  r"what should (?:i|we|be) do|how (?:do|should) (?:i|we|you) (?:handle|deal)|plan|bundle|"
                  r"resuscitat\w*|thromboly\w*|thrombectomy|pelvic floor|counsel\w*|refer\w*|escalat\w*|regimen|"
                  r"chemotherapy|radiotherapy|1st[- ]line|2nd[- ]line|tx|admit\w*)\b"),
    ("treatment", CHOICE),
    ("general", r"\b(?:how common|prevalence|incidence|epidemiolog\w*|prognosis|life expectancy|survival|outlook|"
                r"what does the \w+ do|function of|anatomy|physiology|history of|define|definition|what is meant|"
                r"who gets|risk of getting|prevent\w*|is \w+ (?:good|bad) for)\b"),
]
CUE_SCALE = 0.3  # cue counts (0-2) scaled to sit near the embedding's values; chosen by cross-validation
WORD = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
MIN_QUESTIONS = 2  # a word or word pair enters the vocabulary when at least 2 training questions hold it
L2 = 1e-3  # weight decay; chosen by cross-validation (1e-4 to 1e-2 tried)
STEPS, LEARNING_RATE = 1500, 0.05  # Adam on the whole training set: converged well before 1,500 steps


def _terms(question: str) -> set[str]:
    """Lower-case words and adjacent word pairs: "dose of" and "or losartan" carry intent a word alone does not."""
    words = WORD.findall(question.lower())
    return set(words) | {f"{a} {b}" for a, b in zip(words, words[1:])}


def _features(questions: list[str], embeddings: np.ndarray, vocabulary: dict[str, int]) -> np.ndarray:
    """One row per question: unit embedding, scaled cue counts, the vocabulary's terms (unit length)."""
    vectors = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    cues = np.array([[min(2, len(re.findall(pattern, q.lower()))) for _, pattern in CUES] for q in questions],
                    dtype=np.float32) * CUE_SCALE
    terms = np.zeros((len(questions), len(vocabulary)), dtype=np.float32)
    for row, question in enumerate(questions):
        columns = [vocabulary[t] for t in _terms(question) if t in vocabulary]
        terms[row, columns] = 1 / np.sqrt(len(columns)) if columns else 0
    return np.hstack([vectors, cues, terms])


def _softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


class Router:
    """route(question) -> (route, confidence). Reuses a loaded `index.embed.Embedder`."""

    def __init__(self, embedder):
        self.embedder = embedder

    @cached_property
    def _model(self) -> tuple[dict[str, int], np.ndarray, np.ndarray]:
        model = json.loads(MODEL_FILE.read_text(encoding="utf-8"))
        vocabulary = {term: column for column, term in enumerate(model["vocabulary"])}
        return vocabulary, np.asarray(model["weights"], dtype=np.float32), np.asarray(model["bias"], dtype=np.float32)

    def scores(self, question: str) -> dict[str, float]:
        """Each route's probability for this question (they sum to 1)."""
        vocabulary, weights, bias = self._model
        embedding = np.asarray(self.embedder.embed([question]), dtype=np.float32)
        probabilities = _softmax(_features([question], embedding, vocabulary) @ weights + bias)[0]
        return {route: float(p) for route, p in zip(ROUTES, probabilities)}

    def route(self, question: str) -> tuple[str, float]:
        scores = self.scores(question)
        best = max(scores, key=scores.get)
        return best, scores[best]


def fit(questions: list[str], routes: list[str], embeddings: np.ndarray) -> dict:
    """Fit the regression; returns the model as stored in route_model.json."""
    counts: dict[str, int] = {}
    for question in questions:
        for term in _terms(question):
            counts[term] = counts.get(term, 0) + 1
    vocabulary = {t: i for i, t in enumerate(sorted(t for t, n in counts.items() if n >= MIN_QUESTIONS))}
    x = _features(questions, embeddings, vocabulary)
    y = np.eye(len(ROUTES))[[ROUTES.index(r) for r in routes]]
    params = [np.zeros((x.shape[1], len(ROUTES))), np.zeros(len(ROUTES))]
    moments = [[np.zeros_like(p), np.zeros_like(p)] for p in params]
    for step in range(1, STEPS + 1):
        error = (_softmax(x @ params[0] + params[1]) - y) / len(x)
        gradients = [x.T @ error + L2 * params[0], error.sum(axis=0)]
        for p, g, m in zip(params, gradients, moments):  # Adam: no tuning of a step size per feature scale
            m[0] = 0.9 * m[0] + 0.1 * g
            m[1] = 0.999 * m[1] + 0.001 * g * g
            p -= LEARNING_RATE * (m[0] / (1 - 0.9 ** step)) / (np.sqrt(m[1] / (1 - 0.999 ** step)) + 1e-8)
    return {"vocabulary": list(vocabulary), "weights": np.round(params[0], 4).tolist(),
            "bias": np.round(params[1], 4).tolist()}


def _accuracy(model: dict, questions: list[str], routes: list[str], embeddings: np.ndarray) -> float:
    vocabulary = {t: i for i, t in enumerate(model["vocabulary"])}
    logits = _features(questions, embeddings, vocabulary) @ np.asarray(model["weights"]) + model["bias"]
    return float(np.mean([ROUTES[i] == r for i, r in zip(logits.argmax(axis=1), routes)]))


def main() -> None:
    """Refit on route_training.jsonl, print 5-fold cross-validated accuracy, write route_model.json."""
    from index.embed import Embedder

    rows = [json.loads(line) for line in TRAINING_FILE.read_text(encoding="utf-8").splitlines() if line.strip()]
    questions, routes = [r["question"] for r in rows], [r["route"] for r in rows]
    embeddings = np.asarray(Embedder().embed(questions), dtype=np.float32)
    folds = np.random.default_rng(0).permutation(len(rows)) % 5
    accuracies = []
    for k in range(5):
        train, test = np.flatnonzero(folds != k), np.flatnonzero(folds == k)
        model = fit([questions[i] for i in train], [routes[i] for i in train], embeddings[train])
        accuracies.append(_accuracy(model, [questions[i] for i in test], [routes[i] for i in test], embeddings[test]))
    print(f"5-fold cross-validated accuracy {np.mean(accuracies):.3f} on {len(rows)} questions "
          f"(folds {', '.join(f'{a:.3f}' for a in accuracies)})")
    model = fit(questions, routes, embeddings)
    MODEL_FILE.write_text(json.dumps(model, separators=(",", ":")) + "\n", encoding="utf-8")
    print(f"wrote {MODEL_FILE} ({MODEL_FILE.stat().st_size // 1024} KiB, {len(model['vocabulary'])} terms)")


if __name__ == "__main__":
    main()
