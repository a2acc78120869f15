"""The vocabulary of the rule-based finding labeller: findings with synonyms, and NegEx-style triggers.

Findings follow the CheXpert labeller's observations (Irvin et al. 2019) where they overlap, plus
general findings (fracture, lesion, hemorrhage, infarct, tumor). Trigger lists follow NegEx
(Chapman et al. 2001, "A simple algorithm for identifying negated findings and diseases in discharge
summaries", J Biomed Inform 34(5)) and its ConText extension (Harkema et al. 2009). Every entry is a
regular-expression fragment matched case-insensitively at word boundaries.
"""

from __future__ import annotations

NO_FINDING = "no finding"

# finding -> synonyms (regular-expression fragments)
FINDINGS: dict[str, tuple[str, ...]] = {
    "consolidation": (
        r"consolidat(?:ion|ions|ive|ed)",
        r"air ?space (?:disease|opacit(?:y|ies))",
    ),
    "pneumonia": (r"(?:broncho)?pneumonias?", r"pneumonic", r"infectious process"),
    "pleural effusion": (
        r"(?:pleural )?effusions?",
        r"hydrothora(?:x|ces)",
        r"pleural fluid",
    ),
    "cardiomegaly": (
        r"cardiomegaly",
        r"cardiac enlargement",
        r"enlarged (?:heart|cardiac silhouette)",
        r"enlargement of the (?:heart|cardiac silhouette)",
        r"(?:heart|cardiac silhouette|heart size) (?:is|appears) (?:mildly |moderately |markedly |severely )?enlarged",
    ),
    "nodule": (r"nodules?", r"nodular (?:opacit(?:y|ies)|densit(?:y|ies))"),
    "mass": (r"mass(?:es)?(?! effect)",),
    "pneumothorax": (r"pneumothora(?:x|ces)", r"ptx"),
    "atelectasis": (r"atelecta(?:sis|ses|tic)", r"(?:lobar|lung) collapse"),
    "edema": (
        r"o?edema(?:tous)?",
        r"(?:pulmonary )?vascular congestion",
        r"pulmonary congestion",
    ),
    "fracture": (r"fractures?", r"fractured"),
    "lesion": (r"lesions?",),
    "hemorrhage": (
        r"ha?emorrhag(?:e|es|ic)",
        r"ha?ematomas?",
        r"bleed(?:ing)?",
    ),
    "infarct": (r"infarcts?", r"infarction", r"infarcted", r"ischa?emic stroke"),
    "tumor": (
        r"tumou?rs?",
        r"neoplasms?",
        r"neoplastic",
        r"malignan(?:cy|cies|t)",
        r"carcinomas?",
        r"cancer",
    ),
}

# phrases that state a finding is absent; matched as a mention labelled 0
NORMAL_STATEMENTS: dict[str, tuple[str, ...]] = {
    "cardiomegaly": (
        r"(?:heart|cardiac silhouette|heart size) (?:is|appears) (?:not enlarged|normal|within normal limits)",
        r"normal (?:heart size|cardiac silhouette|cardiac size)",
    ),
}

# phrases that state the study is normal; they set "no finding" when nothing else is positive
NO_FINDING_STATEMENTS: tuple[str, ...] = (
    r"no acute (?:cardiopulmonary|intracranial|osseous|chest|thoracic)? ?(?:process|abnormality|abnormalities|findings?|disease)",
    r"no (?:radiographic )?(?:evidence of )?(?:active|acute) disease",
    r"no abnormalit(?:y|ies)",
    r"normal (?:study|chest|radiograph|examination|exam|ct|mri)",
    r"unremarkable (?:study|examination|exam|radiograph|chest radiograph)",
    r"within normal limits",
)

# triggers before a finding that negate it, to the end of the scope
PRE_NEGATION: tuple[str, ...] = (
    r"no",
    r"not",
    r"without",
    r"negative for",
    r"free of",
    r"clear of",
    r"no evidence of",
    r"no signs? of",
    r"no radiographic evidence of",
    r"absence of",
    r"resolved",
    r"resolution of",
    r"interval resolution of",
    r"no new",
    r"no longer",
    r"rules out",
    r"ruled out",
    r"denies",
    r"never had",
    r"there is no",
    r"there are no",
)

# triggers after a finding that negate it
POST_NEGATION: tuple[str, ...] = (
    r"(?:is|are|was|were) absent",
    r"absent",
    r"(?:has|have) resolved",
    r"resolved",
    r"ruled out",
    r"(?:is|are|was|were) ruled out",
    r"(?:is|are|was|were) not (?:seen|identified|present|demonstrated|visualized)",
    r"not (?:seen|identified|present|demonstrated|visualized)",
    r"(?:has|have) cleared",
    r"unlikely",
)

# triggers before a finding that make it uncertain
PRE_UNCERTAINTY: tuple[str, ...] = (
    r"possible",
    r"possibly",
    r"probable",
    r"probably",
    r"likely",
    r"may represent",
    r"may be",
    r"might represent",
    r"could represent",
    r"could be",
    r"cannot exclude",
    r"can not exclude",
    r"can't exclude",
    r"cannot rule out",
    r"can not rule out",
    r"cannot be excluded",
    r"suspicious for",
    r"suspected",
    r"suspect",
    r"concerning for",
    r"concern for",
    r"suggestive of",
    r"suggests?",
    r"questionable",
    r"equivocal",
    r"worrisome for",
    r"differential diagnosis includes?",
    r"rule out",
    r"r/o",
    r"borderline",
    r"versus",
    r"vs",
    r"may",
    r"might",
)

# triggers after a finding that make it uncertain
POST_UNCERTAINTY: tuple[str, ...] = (
    r"(?:is|are) (?:possible|likely|suspected|questioned|not excluded)",
    r"cannot be (?:excluded|ruled out)",
    r"can not be (?:excluded|ruled out)",
    r"can't be (?:excluded|ruled out)",
    r"not (?:excluded|ruled out)",
    r"(?:is|are) not (?:excluded|ruled out)",
    r"(?:is|are) a possibility",
    r"(?:is|are) questionable",
    r"versus",
    r"vs",
)

# phrases that look like negations but are not (NegEx pseudo-negations); they neither negate nor end scope
PSEUDO: tuple[str, ...] = (
    r"no (?:significant |interval )?change",
    r"no increase",
    r"no decrease",
    r"not only",
    r"not necessarily",
    r"without (?:significant )?change",
    r"gram[- ]negative",
    r"not changed",
    r"no suspicious change",
)

# words that end the scope of a trigger within a sentence (ConText's termination terms)
TERMINATORS: tuple[str, ...] = (
    r"but",
    r"however",
    r"although",
    r"though",
    r"yet",
    r"except(?: for)?",
    r"aside from",
    r"apart from",
    r"other than",
    r"which",
    r"there (?:is|are|has been|have been)",
    r"otherwise",
    r"whereas",
    r"nevertheless",
)
