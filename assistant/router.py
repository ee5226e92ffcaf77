"""Route a question to diagnosis, treatment, medication or general, offline and in milliseconds.

Two signals, added up per route:
- similarity of the question's embedding to a handful of prototype questions per route (the same
  MiniLM model the index uses, so no extra model is loaded);
- cue rules: drug names and drug-name stems, dose and side-effect words point to medication;
  "diagnose", "test", "most likely" to diagnosis; "manage", "first-line", "next step" to treatment.
The confidence is a softmax over the summed scores. An LLM selector would be slower and no better
on this task (see docs/benchmarks.md for accuracy on the labelled set).
"""

from __future__ import annotations

import json
import re
from functools import cached_property
from pathlib import Path

import numpy as np

from corpus import ROUTES

# Example questions per route (written for this project, distinct from the evaluation set in
# benchmarks/data/route_questions.jsonl); a question is compared with its nearest examples.
PROTOTYPES_FILE = Path(__file__).with_name("route_prototypes.json")
NEIGHBOURS = 3  # a route's similarity is the mean of its 3 closest examples: robust to one odd example

# Drug-name stems (INN suffixes) and common drugs whose names carry no stem.
DRUG_STEMS = (r"\w+(?:pril|sartan|olol|dipine|statin|gliflozin|glutide|gliptin|xaban|gatran|parin|prazole|tidine|"
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
              r"alteplase|tenecteplase|adrenaline|epinephrine|atropine|sildenafil|tamsulosin|finasteride|"
              r"mirabegron|oxybutynin|sumatriptan|ondansetron|metoclopramide|omeprazole|lansoprazole|"
              r"bisoprolol|atenolol|propranolol|ramipril|lisinopril|amlodipine|losartan|simvastatin|atorvastatin|"
              r"rosuvastatin|sglt2|glp-?1|doacs?|ssris?|snris?|nsaids?|ppi|ace ?inhibitors?|arbs?|statins?|antibiotics?|"
              r"beta[- ]?blockers?|diuretics?|anticoagulants?|antidepressants?|opioids?|steroids?|inhalers?|"
              r"brentuximab|bleomycin|doxorubicin|abvd|beacopp|semaglutide|liraglutide|empagliflozin|dapagliflozin)\b")
# A choice between treatments: "which drug should we start", "switch from ramipril to what", "add-on to metformin".
# Such a question names drugs, but it asks what to do, not about a drug: see Router.scores.
CHOICE = (r"\b(?:which (?:drug|antibiotic|agent|medicine|medication|inhaler|treatment|option|class)|what (?:to|should "
          r"(?:i|we|be)) (?:start|add|give|use|try|switch)|add[- ]on|add(?:ed|ing)? (?:in|on)?|instead(?: of)?|"
          r"alternative|switch\w*(?: to)?|step(?:ped)? up|first[- ]line|1st[- ]line|next step|best (?:option|choice)|"
          r"start(?:ed|ing)? (?:on|with)|(?:better|preferred) than)\b")
CUES = {
    "medication": [
        (DRUG_STEMS, 0.12), (DRUG_NAMES, 0.12),
        (r"\b(?:dose|doses|dosing|dosage|mg|mcg|micrograms?|units?/kg|tablets?|pills?|side[- ]effects?|adverse|"
         r"interact\w*|contraindicat\w*|overdose|max(?:imum)? (?:daily )?dose|titrat\w*|taper\w*|take .* with|"
         r"safe (?:in|during|to take|with)|switch\w* (?:from|to)|renal dosing|levels?|monitor\w*|prescrib\w*|"
         r"medicines?|medications?|drugs?)\b", 0.15),
    ],
    "diagnosis": [
        (r"\b(?:diagnos\w*|most likely|likely cause|differential|test(?:s|ing)?|investigat\w*|criteria|score|"
         r"scoring|stag(?:e|es|ing)|confirm\w*|interpret\w*|findings?|signs?|symptoms?|present(?:s|ed|ing) with|"
         r"work-?up|screen\w*|biopsy|ecg|x-?ray|ct|mri|ultrasound|blood test|what(?:'s| is) wrong|"
         r"recogni[sz]e|tell .* apart|distinguish|raised|elevated|low|high|urodynamic\w*)\b", 0.12),
    ],
    "treatment": [
        (r"\b(?:treat\w*|manag\w*|therap\w*|first[- ]line|second[- ]line|next (?:best )?step|surgery|surgical|"
         r"operation|procedure|lifestyle|exercise|physiotherapy|rehab\w*|cure|control|what should (?:i|we|be) do|"
         r"how (?:do|should) (?:i|we|you) (?:handle|deal)|plan|bundle|resuscitat\w*|thromboly\w*|thrombectomy|"
         r"pelvic floor|counsel\w*|refer\w*|escalat\w*|regimen|chemotherapy|radiotherapy|1st[- ]line|2nd[- ]line|tx|"
         r"admit\w*)\b", 0.12),
        (CHOICE, 0.12),
    ],
    "general": [
        (r"\b(?:how common|prevalence|incidence|epidemiolog\w*|prognosis|life expectancy|survival|outlook|"
         r"what does the \w+ do|function of|anatomy|physiology|history of|define|definition|what is meant|"
         r"who gets|risk of getting|prevent\w*|is \w+ (?:good|bad) for)\b", 0.15),
    ],
}
TEMPERATURE = 0.05  # softmax temperature on summed scores; sets how peaked the confidence is


def _drug_damping(pattern: str, choice: bool) -> float:
    """Drug names count half toward medication in a question that asks for a choice of treatment."""
    return 0.5 if choice and pattern in (DRUG_STEMS, DRUG_NAMES) else 1.0


class Router:
    """route(question) -> (route, confidence). Reuses a loaded `index.embed.Embedder`."""

    def __init__(self, embedder):
        self.embedder = embedder

    @cached_property
    def _prototypes(self) -> list[np.ndarray]:
        """Unit vectors of each route's example questions, in ROUTES order."""
        examples = json.loads(PROTOTYPES_FILE.read_text(encoding="utf-8"))
        matrices = []
        for route in ROUTES:
            vectors = np.asarray(self.embedder.embed(examples[route]), dtype=np.float32)
            matrices.append(vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
        return matrices

    def scores(self, question: str) -> dict[str, float]:
        vector = np.asarray(self.embedder.embed([question])[0], dtype=np.float32)
        vector /= np.linalg.norm(vector)
        text = question.lower()
        choice = bool(re.search(CHOICE, text))
        scores = {}
        for route, examples in zip(ROUTES, self._prototypes):
            similarity = float(np.sort(examples @ vector)[-NEIGHBOURS:].mean())
            cue_score = sum(weight * min(2, len(re.findall(pattern, text))) * _drug_damping(pattern, choice)
                            for pattern, weight in CUES[route])
            scores[route] = similarity + cue_score
        return scores

    def route(self, question: str) -> tuple[str, float]:
        scores = self.scores(question)
        values = np.array([scores[r] for r in ROUTES]) / TEMPERATURE
        probabilities = np.exp(values - values.max())
        probabilities /= probabilities.sum()
        best = int(probabilities.argmax())
        return ROUTES[best], float(probabilities[best])
