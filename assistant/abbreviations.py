"""Clinical shorthand spelled out, so that "DCCV", "pred" and "SVT" find the notes that say "cardioversion",
"prednisolone" and "supraventricular tachycardia".

Clinicians ask in shorthand; reference notes often write terms out. MiniLM knows few clinical
abbreviations, and BM25 matches only the letters written, so a question is searched and read with each
abbreviation the notes do not use followed by its meaning: "... planned DCCV (electrical cardioversion)". Only unambiguous expansions are listed
("BD" is twice daily or bronchodilator, so only "post-BD" is listed). No library offers a clinical abbreviation
list that works offline; this one is written for the project from common UK and US usage.
"""

from __future__ import annotations

import re

ABBREVIATIONS = {
    "AAA": "abdominal aortic aneurysm", "ABG": "arterial blood gas", "ABPM": "ambulatory blood pressure monitoring",
    "abx": "antibiotics", "ACEi": "ACE inhibitor", "ACS": "acute coronary syndrome", "AF": "atrial fibrillation",
    "AKI": "acute kidney injury", "BG": "blood glucose", "BMs": "blood glucose", "BP": "blood pressure",
    "BNP": "B-type natriuretic peptide", "BPH": "benign prostatic hyperplasia",
    "CAP": "community-acquired pneumonia", "CCB": "calcium-channel blocker",
    "CHF": "heart failure", "CKD": "chronic kidney disease", "COCP": "combined oral contraceptive pill",
    "COPD": "chronic obstructive pulmonary disease", "CrCl": "creatinine clearance", "CRP": "C-reactive protein",
    "CVA": "stroke", "CXR": "chest X-ray", "DCCV": "electrical cardioversion", "DKA": "diabetic ketoacidosis",
    "DM": "diabetes", "DVT": "deep vein thrombosis", "Dx": "diagnosis", "ddx": "differential diagnosis",
    "EF": "ejection fraction", "FBC": "full blood count", "FRIII": "fixed-rate intravenous insulin infusion",
    "GI": "gastrointestinal", "GORD": "gastro-oesophageal reflux disease", "HBPM": "home blood pressure monitoring",
    "HF": "heart failure", "HFrEF": "heart failure with reduced ejection fraction",
    "HFpEF": "heart failure with preserved ejection fraction", "HRT": "hormone replacement therapy",
    "HTN": "hypertension", "Hx": "history", "ICH": "intracranial haemorrhage", "ICS": "inhaled corticosteroid",
    "IHD": "ischaemic heart disease", "IM": "intramuscular", "IV": "intravenous",
    "LABA": "long-acting beta-agonist", "LAMA": "long-acting muscarinic antagonist", "LFTs": "liver function tests (ALT)",
    "LMWH": "low-molecular-weight heparin", "LUTS": "lower urinary tract symptoms", "LVEF": "ejection fraction",
    "MART": "maintenance and reliever therapy", "MI": "myocardial infarction",
    "MRA": "mineralocorticoid receptor antagonist", "NIV": "non-invasive ventilation", "OAB": "overactive bladder",
    "OGTT": "oral glucose tolerance test", "PAD": "peripheral arterial disease", "PE": "pulmonary embolism",
    "post-bd": "post-bronchodilator", "PPI": "proton-pump inhibitor", "pred": "prednisolone",
    "PRN": "as needed", "pt": "patient", "Rx": "treatment",
    "SABA": "short-acting beta-agonist", "SAH": "subarachnoid haemorrhage", "sats": "oxygen saturation",
    "SC": "subcutaneous", "SGLT2i": "SGLT2 inhibitor", "SOB": "shortness of breath",
    "SUI": "stress urinary incontinence", "SVT": "supraventricular tachycardia", "T2DM": "type 2 diabetes",
    "TFTs": "thyroid function tests", "TIA": "transient ischaemic attack", "Tx": "treatment",
    "U&E": "urea and electrolytes (sodium, potassium, creatinine)",
    "U&Es": "urea and electrolytes (sodium, potassium, creatinine)", "UTI": "urinary tract infection",
    "VBG": "venous blood gas", "VTE": "venous thromboembolism",
    # More common shorthand of wards and clinics (each unambiguous in a clinical question).
    "A&E": "emergency department", "ARB": "angiotensin receptor blocker", "ARNI": "sacubitril-valsartan",
    "CABG": "coronary artery bypass graft", "DOAC": "direct oral anticoagulant", "DAPT": "dual antiplatelet therapy",
    "eGFR": "estimated glomerular filtration rate",
    "GCS": "Glasgow Coma Scale", "GTN": "glyceryl trinitrate", "Hb": "haemoglobin", "HbA1c": "glycated haemoglobin",
    "HHS": "hyperosmolar hyperglycaemic state", "IBD": "inflammatory bowel disease", "IBS": "irritable bowel syndrome",
    "ICU": "intensive care", "ITU": "intensive care", "LMP": "last menstrual period", "LP": "lumbar puncture",
    "LTOT": "long-term oxygen therapy", "MTX": "methotrexate", "NOAC": "direct oral anticoagulant",
    "NSAID": "non-steroidal anti-inflammatory drug", "NSAIDs": "non-steroidal anti-inflammatory drugs",
    "NSTEMI": "non-ST-elevation myocardial infarction", "OSA": "obstructive sleep apnoea",
    "PCI": "percutaneous coronary intervention", "PEF": "peak expiratory flow", "PEFR": "peak expiratory flow",
    "QDS": "four times daily", "SSRI": "selective serotonin reuptake inhibitor",
    "SSRIs": "selective serotonin reuptake inhibitors", "STEMI": "ST-elevation myocardial infarction",
    "T1DM": "type 1 diabetes", "TDS": "three times daily", "TSH": "thyroid-stimulating hormone",
    "VF": "ventricular fibrillation", "VT": "ventricular tachycardia", "WCC": "white cell count",
    "nebs": "nebulised bronchodilators", "obs": "observations", "hypo": "hypoglycaemia", "hypos": "hypoglycaemia",
    "creat": "creatinine",
    # Scores and names written without their hyphen, in any case: the notes write "PHQ-9", and "PHQ9" matches none
    # of their words.
    "phq9": "PHQ-9", "curb65": "CURB-65", "crb65": "CRB-65", "glp1": "GLP-1",
    # Scores, by what they measure: MiniLM does not know their names, and "CURB-65 of 2?" as written was under the
    # relevance floor (dense similarity 0.27).
    "curb-65": "pneumonia severity score", "crb-65": "pneumonia severity score", "nihss": "stroke severity scale",
    "cha2ds2-vasc": "stroke risk score in atrial fibrillation", "has-bled": "bleeding risk score",
    "qsofa": "quick sepsis score", "news2": "early warning score", "phq-9": "depression questionnaire score",
    "abcd2": "stroke risk score after TIA",
    # Compound preparations, named by what they hold: "co-codamol" is in no note, codeine and paracetamol are.
    "K+": "potassium", "co-codamol": "codeine with paracetamol", "co-dydramol": "dihydrocodeine with paracetamol",
    # Drugs as the ward says them: cut short, or by brand. A brand is in no note, and "Entresto target dose?" was
    # refused as a question about something the notes do not cover.
    "fluclox": "flucloxacillin", "amox": "amoxicillin", "co-amox": "co-amoxiclav", "clari": "clarithromycin",
    "doxy": "doxycycline", "cipro": "ciprofloxacin", "trimeth": "trimethoprim",
    "thyroxine": "levothyroxine", "simva": "simvastatin", "atorva": "atorvastatin",
    "bisop": "bisoprolol", "norad": "noradrenaline", "mag sulph": "magnesium sulfate",
    "entresto": "sacubitril-valsartan", "eliquis": "apixaban", "xarelto": "rivaroxaban", "pradaxa": "dabigatran",
    "lixiana": "edoxaban", "brilique": "ticagrelor", "brilinta": "ticagrelor", "plavix": "clopidogrel",
    "jardiance": "empagliflozin", "forxiga": "dapagliflozin", "farxiga": "dapagliflozin",
    "ozempic": "semaglutide", "wegovy": "semaglutide", "victoza": "liraglutide", "glucophage": "metformin",
    "lasix": "furosemide", "ventolin": "salbutamol", "spiriva": "tiotropium", "symbicort": "budesonide-formoterol",
    "seretide": "fluticasone-salmeterol", "epipen": "adrenaline auto-injector", "augmentin": "co-amoxiclav",
    "calpol": "paracetamol", "tylenol": "paracetamol", "nurofen": "ibuprofen", "advil": "ibuprofen",
    "zoloft": "sertraline", "lustral": "sertraline", "prozac": "fluoxetine", "lipitor": "atorvastatin",
    "coumadin": "warfarin", "narcan": "naloxone", "macrobid": "nitrofurantoin", "keflex": "cefalexin",
    "zestril": "lisinopril", "norvasc": "amlodipine", "synthroid": "levothyroxine",
    "actrapid": "soluble insulin", "humulin s": "soluble insulin", "novorapid": "insulin aspart",
    "humalog": "insulin lispro", "apidra": "insulin glulisine", "lantus": "insulin glargine",
    "toujeo": "insulin glargine",
    # Conditions in a patient's words; the notes use the clinical term.
    "bladder infection": "cystitis, lower urinary tract infection", "water infection": "urinary tract infection",
    "urine infection": "urinary tract infection", "kidney infection": "pyelonephritis",
    "heart attack": "myocardial infarction", "mini-stroke": "transient ischaemic attack",
    "mini stroke": "transient ischaemic attack", "high blood pressure": "hypertension",
    "underactive thyroid": "hypothyroidism", "blood clot in the lung": "pulmonary embolism",
    "sugar": "glucose", "sugars": "glucose", "blood sugar": "blood glucose",
}
# Shorthand for how and how often a drug is given, and for the parts of a case note. It names no topic, so the agent's
# search with the notes' own shorthand spelled out keeps it as written: "Needed two IM adrenaline doses ... how long
# to observe her?" with "intramuscular" spelled out found the IM dose tables, not the observation times.
NOT_TOPICS = frozenset({"IM", "IV", "SC", "PRN", "QDS", "TDS", "pt", "Rx", "Tx", "Dx", "Hx", "obs"})
# Capitals must match ("PE" is pulmonary embolism, "pe" nothing); shorthand listed in lower case matches in
# any case ("Pred", "Post-BD").
_LOWER = {a.lower(): a for a in ABBREVIATIONS if a == a.lower()}
_PATTERN = re.compile(r"(?<![\w-])(" + "|".join(re.escape(a) for a in sorted(ABBREVIATIONS, key=len, reverse=True)
                                               if a != a.lower())
                      + r"|(?i:" + "|".join(re.escape(a) for a in sorted(_LOWER, key=len, reverse=True)) + r"))(?![\w-])")


# "K 3.1", "K=5.9", "K+ 6.2": potassium, when a value follows (not "vitamin K 5 mg"). Written "K+" and spelled out
# as that; the notes never write it, and "pt on lasix 80mg, K 3.1" quoted furosemide's doses, nothing on potassium.
_POTASSIUM = re.compile(r"(?<![\w-])(?<!(?i:vitamin) )(?<!(?i:vit) )K\+?(?=\s*[=:]?\s*\d)")


# "2/52", "3/7", "6/12": weeks, days and months as UK notes write them ("started ramipril 2/52 ago"); not "24/7".
_PERIOD = re.compile(r"(?<![\w/.])(?!24/7)(\d{1,2})/(52|12|7)(?![\w/.])")
_PERIODS = {"52": "weeks", "12": "months", "7": "days"}


def expand(question: str, spoken=lambda short: False, keep_short: bool = True) -> str:
    """The question with each known abbreviation followed by its meaning, once: "DCCV (electrical
    cardioversion)". Not when the meaning is already spelled out, nor when `spoken(short)` says the indexed notes
    use the abbreviation themselves: spelling out "DVT" in "target INR for a first DVT on warfarin" pulled the
    search toward the DVT diagnosis note and away from warfarin's. `keep_short=False` puts the meaning in the
    abbreviation's place ("When do liver function tests need checking?"): the question in the notes' words."""
    lowered, seen = question.lower(), set()

    def spell(match: re.Match) -> str:
        short = match.group(1)
        meaning = _meaning(short)
        if short in seen or meaning.lower() in lowered or spoken(short):
            return short
        seen.add(short)
        return f"{short} ({meaning})" if keep_short else meaning

    def period(match: re.Match) -> str:
        spelled = f"{match.group(1)} {_PERIODS[match.group(2)]}"
        return f"{match.group(0)} ({spelled})" if keep_short else spelled

    return _PERIOD.sub(period, _PATTERN.sub(spell, _POTASSIUM.sub("K+", question)))


def meanings(text: str) -> dict[str, str]:
    """Each known abbreviation the text uses, with its meaning: {"BP": "blood pressure"}."""
    return {m.group(1): _meaning(m.group(1)) for m in _PATTERN.finditer(text)}


def _meaning(short: str) -> str:
    """An abbreviation's meaning, as written or, for shorthand listed in lower case, in any case ("Pred")."""
    return ABBREVIATIONS.get(short) or ABBREVIATIONS[_LOWER[short.lower()]]
