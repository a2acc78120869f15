"""Metric functions of the evaluation standard: pure functions on numpy arrays and torch tensors.

Every headline metric is registered in :data:`METRICS` (name -> function). Inputs hold one entry per
sample; outputs are floats, or dictionaries keyed by the stable metric names of the design
(``accuracy``, ``auroc``, ``ece``, ``i2t_R@1``, ``bleu4``, ``cider``, ``clinical_f1``, ...).
Confidence intervals come from :func:`bootstrap_ci` / :func:`bootstrap_metrics` (patient-level
resampling with ``groups``).
"""

from medfuse.evaluate.metrics._registry import METRICS
from medfuse.evaluate.metrics.alignment import (
    alignment,
    alignment_metrics,
    modality_gap,
    positive_pair_similarity,
    random_pair_similarity,
    uniformity,
)
from medfuse.evaluate.metrics.calibration import (
    ReliabilityDiagram,
    apply_temperature,
    brier_score,
    calibration_metrics,
    expected_calibration_error,
    fit_temperature,
    maximum_calibration_error,
    reliability_diagram,
)
from medfuse.evaluate.metrics.classification import classification_metrics
from medfuse.evaluate.metrics.clinical import clinical_efficacy, finding_names, label_report
from medfuse.evaluate.metrics.delong import DeLongResult, delong_covariance, delong_test
from medfuse.evaluate.metrics.generation import (
    bleu,
    bleu4,
    cider_d,
    cider_d_scores,
    generation_metrics,
    lcs_length,
    rouge_l,
    rouge_l_scores,
    tokenize,
)
from medfuse.evaluate.metrics.ranking import (
    PrCurve,
    RocCurve,
    auprc,
    auprc_per_label,
    auroc,
    auroc_per_label,
    pr_curve,
    roc_curve,
    sensitivity_at_specificity,
    sensitivity_at_specificity_per_label,
    specificity_at_sensitivity,
    specificity_at_sensitivity_per_label,
)
from medfuse.evaluate.metrics.relevance import Relevance, group_ids
from medfuse.evaluate.metrics.retrieval import (
    higher_counts,
    metrics_from_counts,
    rank_metrics,
    retrieval_metrics,
)
from medfuse.evaluate.metrics.thresholded import (
    LabelStats,
    PrecisionRecallF1,
    accuracy,
    balanced_accuracy,
    confusion_matrix,
    f1_score,
    label_stats,
    multilabel_confusion_matrix,
    precision_recall_f1,
    predictions,
    subset_accuracy,
)
from medfuse.evaluate.metrics.uncertainty import (
    ConfidenceInterval,
    bootstrap_ci,
    bootstrap_metrics,
    paired_bootstrap_test,
)
from medfuse.evaluate.metrics.vqa import normalize_answer, vqa_accuracy, vqa_score

__all__ = [
    "METRICS",
    "ConfidenceInterval",
    "DeLongResult",
    "LabelStats",
    "PrCurve",
    "PrecisionRecallF1",
    "Relevance",
    "ReliabilityDiagram",
    "RocCurve",
    "accuracy",
    "alignment",
    "alignment_metrics",
    "apply_temperature",
    "auprc",
    "auprc_per_label",
    "auroc",
    "auroc_per_label",
    "balanced_accuracy",
    "bleu",
    "bleu4",
    "bootstrap_ci",
    "bootstrap_metrics",
    "brier_score",
    "calibration_metrics",
    "cider_d",
    "cider_d_scores",
    "classification_metrics",
    "clinical_efficacy",
    "confusion_matrix",
    "delong_covariance",
    "delong_test",
    "expected_calibration_error",
    "f1_score",
    "finding_names",
    "fit_temperature",
    "generation_metrics",
    "group_ids",
    "higher_counts",
    "label_report",
    "label_stats",
    "lcs_length",
    "maximum_calibration_error",
    "metrics_from_counts",
    "modality_gap",
    "multilabel_confusion_matrix",
    "normalize_answer",
    "paired_bootstrap_test",
    "positive_pair_similarity",
    "pr_curve",
    "precision_recall_f1",
    "predictions",
    "random_pair_similarity",
    "rank_metrics",
    "reliability_diagram",
    "retrieval_metrics",
    "rouge_l",
    "rouge_l_scores",
    "roc_curve",
    "sensitivity_at_specificity",
    "sensitivity_at_specificity_per_label",
    "specificity_at_sensitivity",
    "specificity_at_sensitivity_per_label",
    "subset_accuracy",
    "tokenize",
    "uniformity",
    "vqa_accuracy",
    "vqa_score",
]
