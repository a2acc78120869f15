"""Rule-based finding labeller (negation, uncertainty, scope) and clinical efficacy."""

from __future__ import annotations

import pytest

from medfuse.core.errors import DataError
from medfuse.evaluate.metrics import clinical_efficacy, finding_names, label_report


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Right lower lobe consolidation.", {"consolidation": 1}),
        ("No pleural effusion.", {"pleural effusion": 0}),
        ("There is no evidence of pneumothorax.", {"pneumothorax": 0}),
        ("Lungs are free of focal consolidation.", {"consolidation": 0}),
        ("Negative for fracture.", {"fracture": 0}),
        ("Patient without pulmonary edema.", {"edema": 0}),
        ("Pneumothorax is absent.", {"pneumothorax": 0}),
        ("Pneumonia has been ruled out.", {"pneumonia": 0}),
        ("The previously seen pneumonia has resolved.", {"pneumonia": 0}),
        ("Resolved left pleural effusion.", {"pleural effusion": 0}),
        ("Possible right upper lobe nodule.", {"nodule": -1}),
        ("Opacity may represent atelectasis.", {"atelectasis": -1}),
        ("Cannot exclude a small pneumothorax.", {"pneumothorax": -1}),
        ("Pneumonia cannot be ruled out.", {"pneumonia": -1}),
        ("Findings suspicious for malignancy.", {"tumor": -1}),
        ("Likely atelectasis at the left base.", {"atelectasis": -1}),
        ("Mild cardiomegaly.", {"cardiomegaly": 1}),
        ("The heart is enlarged.", {"cardiomegaly": 1}),
        ("Heart size is normal.", {"cardiomegaly": 0}),
        ("Acute intraparenchymal hemorrhage in the left frontal lobe.", {"hemorrhage": 1}),
        ("Old lacunar infarct.", {"infarct": 1}),
        ("Enhancing lesion consistent with neoplasm.", {"lesion": 1, "tumor": 1}),
        ("No change in the left pleural effusion.", {"pleural effusion": 1}),
        ("No mass effect.", {}),
        ("Nodule versus atelectasis.", {"nodule": -1, "atelectasis": -1}),
        ("Effusion resolved, consolidation persists.", {"pleural effusion": 0, "consolidation": 1}),
        ("Rule out pneumonia.", {"pneumonia": -1}),
        ("Lesion is not excluded.", {"lesion": -1}),
    ],
)
def test_single_sentences(text, expected):
    labels = label_report(text)
    labels.pop("no finding", None)
    assert labels == expected


def test_negation_spans_a_list_of_findings():
    labels = label_report("No focal consolidation, pleural effusion, or pneumothorax.")
    assert labels == {"consolidation": 0, "pleural effusion": 0, "pneumothorax": 0, "no finding": 1}


def test_scope_ends_at_but_and_at_the_sentence_end():
    assert label_report("No effusion but there is a right lower lobe consolidation.") == {
        "pleural effusion": 0,
        "consolidation": 1,
    }
    labels = label_report("No pneumothorax. Small left pleural effusion.")
    assert labels["pneumothorax"] == 0 and labels["pleural effusion"] == 1
    labels = label_report("No pneumothorax; nodule in the right apex.")
    assert labels["pneumothorax"] == 0 and labels["nodule"] == 1


def test_double_findings_and_mixed_triggers():
    labels = label_report("Possible consolidation, no effusion. Cardiomegaly and edema.")
    assert labels == {"consolidation": -1, "pleural effusion": 0, "cardiomegaly": 1, "edema": 1}
    # a positive mention anywhere wins over a negated one
    labels = label_report("No effusion on the left. Small right pleural effusion.")
    assert labels["pleural effusion"] == 1
    # uncertain beats negative
    labels = label_report("No pneumonia on the right. Possible pneumonia on the left.")
    assert labels["pneumonia"] == -1


def test_no_finding():
    assert label_report("No acute cardiopulmonary process.") == {"no finding": 1}
    assert label_report("Lungs are clear. Heart size is normal.")["no finding"] == 1
    assert label_report("No acute cardiopulmonary process. Small nodule.")["no finding"] == 0
    assert label_report("Comparison with prior study.") == {}
    assert "no finding" in finding_names()


def test_clinical_efficacy():
    references = ["Left pleural effusion and cardiomegaly.", "No pneumothorax.", "Possible pneumonia."]
    assert clinical_efficacy(references, references)["clinical_f1"] == 1.0
    generated = ["Left pleural effusion. No cardiomegaly.", "Small pneumothorax.", "No pneumonia."]
    out = clinical_efficacy(generated, references)
    # positives: ref {effusion, cardiomegaly}, {no finding}, {pneumonia}; gen {effusion}, {pneumothorax}, {no finding}
    # tp: effusion; fp: pneumothorax, no finding (3rd); fn: cardiomegaly, no finding (2nd), pneumonia
    assert out["clinical_precision"] == pytest.approx(1 / 3)
    assert out["clinical_recall"] == pytest.approx(1 / 4)
    assert out["clinical_f1"] == pytest.approx(2 * 1 / (2 * 1 + 2 + 3))
    assert out["clinical_f1/pleural effusion"] == 1.0 and out["clinical_f1/pneumothorax"] == 0.0
    assert out["clinical_f1_macro"] == pytest.approx(1 / 5)
    # uncertain counted as negative: the reference pneumonia disappears
    strict = clinical_efficacy(generated, references, uncertain_as=0)
    assert strict["clinical_recall"] == pytest.approx(1 / 3)
    with pytest.raises(DataError):
        clinical_efficacy(["a"], ["a", "b"])
    with pytest.raises(DataError):
        clinical_efficacy(["a"], ["a"], uncertain_as=2)
