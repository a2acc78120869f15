"""Retrieval drafting: each evaluated image's draft report is a text of another split, scored like generation.

The dual encoder ranks the distinct texts of the gallery split (default: the training split) for every
image of the evaluated split, by image-text similarity (``mode="text"``, as CXR-RePaiR, Endo et al. 2021)
or by the similarity of the gallery's images (``mode="image"``, the nearest training image's text). Drafts:

- ``nearest``: the top-ranked text (k = 1).
- ``consensus``: of the top ``k`` texts, the one most similar on average to the other ``k - 1``
  (consensus re-ranking, Devlin et al. 2015, "Exploring nearest neighbor approaches for image
  captioning"), similarity by text embeddings (``consensus="embedding"``) or ROUGE-L (``"rouge_l"``).
- ``random``: a gallery row's text drawn at random (seeded): what retrieval must beat.
- ``central``: one text for every image, the gallery text sharing the most words on average with the
  gallery's texts (word-set Dice): an image-blind text that scores well on overlap metrics.

A text never drafts an image it describes: a text is skipped for a query when every gallery row carrying
it is of the query's patient (case) or is the query's own image file, so splits that share a patient
cannot leak a reference into its draft. Scores are those of the generative evaluation (BLEU-1..4,
ROUGE-L, CIDEr-D, clinical precision/recall/F1) with one shared patient-level bootstrap, so differences
between drafts (``<metric>_minus_random``, ...) get paired intervals. The chosen draft (``draft``) carries
the plain metric names; the others carry their name as a suffix (``cider_consensus``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from medfuse.core.config import check_choice
from medfuse.core.errors import ConfigError, DataError
from medfuse.evaluate.metrics.generation import cider_d_scores, ngram_counts, rouge_l_scores, tokenize
from medfuse.evaluate.results import TaskResult
from medfuse.evaluate.tasks.base import (
    EVAL_TASKS,
    EvalContext,
    TaskSkipped,
    bootstrap_draws,
    entries_from_draws,
)
from medfuse.evaluate.tasks.embeddings import image_embeddings, text_embeddings
from medfuse.evaluate.tasks.report_generation import clinical_scores, finding_counts

log = logging.getLogger(__name__)

DRAFTS = ("nearest", "consensus", "random", "central")
HEADLINE = ("bleu4", "rouge_l", "cider", "clinical_f1")
_QUERY_CHUNK = 256  # queries scored at once: bounds the (Q, rows) score matrix


# ---------------------------------------------------------------- scores with a fast bootstrap


@dataclass
class ReportStats:
    """Per-report sufficient statistics of the report scores, so a resample sums rows instead of re-scoring.

    bleu_correct, bleu_guess: clipped n-gram matches and hypothesis n-grams ``(N, 4)``; hyp_len, ref_len
    ``(N,)``; rouge_l, cider: per-report scores ``(N,)`` (CIDEr-D document frequencies from all N
    references); findings: positive-finding ``(tp, fp, fn)`` counts ``(N, 3)``.
    """

    bleu_correct: np.ndarray
    bleu_guess: np.ndarray
    hyp_len: np.ndarray
    ref_len: np.ndarray
    rouge_l: np.ndarray
    cider: np.ndarray
    findings: np.ndarray


def report_stats(hypotheses: Sequence[str], references: Sequence[str], uncertain_as: int = 1) -> ReportStats:
    """Return the :class:`ReportStats` of ``hypotheses`` against one reference each (same length, N >= 1)."""
    if isinstance(hypotheses, str) or len(hypotheses) != len(references) or not hypotheses:
        raise DataError(f"report scores need one reference per text: {len(hypotheses)} texts, {len(references)} references")
    n = len(hypotheses)
    correct = np.zeros((n, 4))
    guess = np.zeros((n, 4))
    hyp_len = np.zeros(n)
    ref_len = np.zeros(n)
    for i, (hyp, ref) in enumerate(zip(hypotheses, references)):
        h, r = tokenize(hyp), tokenize(ref)
        ref_counts = ngram_counts(r)
        for gram, count in ngram_counts(h).items():
            correct[i, len(gram) - 1] += min(count, ref_counts[gram])
        guess[i] = [max(0, len(h) - k) for k in range(4)]
        hyp_len[i], ref_len[i] = len(h), len(r)
    return ReportStats(correct, guess, hyp_len, ref_len, np.asarray(rouge_l_scores(hypotheses, references)),
                       np.asarray(cider_d_scores(hypotheses, references)),
                       finding_counts(hypotheses, references, uncertain_as))


def report_scores(stats: ReportStats, rows: np.ndarray | None = None) -> dict[str, float]:
    """Return ``bleu1``..``bleu4``, ``rouge_l``, ``cider`` and ``clinical_*`` of the reports ``rows`` (repeats allowed).

    BLEU is the corpus BLEU of :func:`medfuse.evaluate.metrics.generation.bleu` (the same value on all
    rows); ROUGE-L and CIDEr-D are means of the per-report scores.
    """
    sel = np.arange(len(stats.hyp_len)) if rows is None else np.asarray(rows, dtype=np.int64)
    correct, guess = stats.bleu_correct[sel].sum(0), stats.bleu_guess[sel].sum(0)
    precisions = np.cumprod((correct + 1e-15) / (guess + 1e-9))
    bleus = precisions ** (1.0 / np.arange(1, 5))
    ratio = (stats.hyp_len[sel].sum() + 1e-15) / (stats.ref_len[sel].sum() + 1e-9)
    if ratio < 1:
        bleus = bleus * np.exp(1 - 1 / ratio)
    out = {f"bleu{k + 1}": float(b) for k, b in enumerate(bleus)}
    out["rouge_l"] = float(stats.rouge_l[sel].mean())
    out["cider"] = float(stats.cider[sel].mean())
    out.update({k: float(v) for k, v in clinical_scores(stats.findings[sel]).items()})
    return out


def score_drafts(
    drafts: Mapping[str, Sequence[str]], references: Sequence[str], *, main: str, groups: Any = None,
    n_resamples: int = 1000, seed: int = 0, uncertain_as: int = 1, baselines: Sequence[str] = (),
) -> dict[str, dict[str, Any]]:
    """Return metric entries (``{"value", "ci95"}``) of several sets of drafts of the same references.

    drafts: name -> one text per reference. ``main``'s metrics keep their names (``cider``); the others get
    ``_<name>`` (``cider_random``). For each of ``baselines``, the headline differences ``<metric>_minus_<name>``
    (main minus baseline) are added. All come from one bootstrap over reports (whole ``groups`` ``(N,)``
    when given), so the differences' intervals are paired.
    """
    if main not in drafts:
        raise ConfigError(f"main: '{main}' is not among the drafts {sorted(drafts)}")
    stats = {name: report_stats(list(texts), references, uncertain_as) for name, texts in drafts.items()}

    def measure(rows: np.ndarray) -> dict[str, float]:
        values: dict[str, float] = {}
        for name, st in stats.items():
            suffix = "" if name == main else f"_{name}"
            values.update({f"{k}{suffix}": v for k, v in report_scores(st, rows).items()})
        for base in baselines:
            for k in HEADLINE:
                values[f"{k}_minus_{base}"] = values[k] - values[f"{k}_{base}"]
        return values

    return entries_from_draws(*bootstrap_draws(measure, len(references), groups=groups, n_resamples=n_resamples,
                                               seed=seed))


# ---------------------------------------------------------------- choosing drafts


@dataclass
class DraftGallery:
    """The texts drafts come from: distinct texts ``(G,)`` with embeddings ``(G, E)`` and their gallery rows.

    row_text: the text of each gallery row ``(R,)``; row_cases / row_images: each row's patient (case)
    id and image file, which decide what a query may not draft from.
    """

    texts: list[str]
    embeddings: Tensor
    row_text: Tensor
    row_cases: list[str]
    row_images: list[str]


def blocked_rows(gallery: DraftGallery, cases: Sequence[str], images: Sequence[str]) -> Tensor:
    """Return ``(Q, R)`` True where gallery row r is of query q's case or is q's own image file."""
    case_ids: dict[str, int] = {}
    row_case = torch.tensor([case_ids.setdefault(c, len(case_ids)) if c else -1 for c in gallery.row_cases])
    query_case = torch.tensor([case_ids.get(c, -2) if c else -2 for c in cases])
    image_ids: dict[str, int] = {}
    row_image = torch.tensor([image_ids.setdefault(p, len(image_ids)) if p else -1 for p in gallery.row_images])
    query_image = torch.tensor([image_ids.get(p, -2) if p else -2 for p in images])
    return (query_case[:, None] == row_case[None, :]) | (query_image[:, None] == row_image[None, :])


def text_scores(row_scores: Tensor, blocked: Tensor, row_text: Tensor, num_texts: int) -> Tensor:
    """Return ``(Q, G)``: each text's best score over its unblocked gallery rows (``-inf`` when all are blocked).

    row_scores, blocked: ``(Q, R)``; row_text: ``(R,)`` text index of each row.
    """
    masked = row_scores.masked_fill(blocked, float("-inf"))
    out = torch.full((row_scores.shape[0], num_texts), float("-inf"), dtype=row_scores.dtype)
    return out.scatter_reduce(1, row_text.expand_as(masked), masked, reduce="amax", include_self=True)


def consensus_pick(candidates: Tensor, valid: Tensor, similarity: Tensor) -> Tensor:
    """Return ``(Q,)`` the candidate most similar on average to the query's other valid candidates.

    candidates, valid: ``(Q, k)`` text indices (best first) and which are usable; similarity: ``(Q, k, k)``
    between each query's candidates. Ties go to the better-ranked candidate; a query with one valid
    candidate keeps it.
    """
    k = candidates.shape[1]
    pair = valid[:, :, None] & valid[:, None, :] & ~torch.eye(k, dtype=torch.bool)[None]
    others = pair.sum(-1).clamp_min(1)
    mean = (similarity * pair).sum(-1) / others
    mean = mean.masked_fill(~valid, float("-inf"))
    best = mean.argmax(dim=1)  # argmax takes the first maximum: the better-ranked candidate on ties
    return candidates.gather(1, best[:, None]).squeeze(1)


def _candidate_similarity(candidates: Tensor, gallery: DraftGallery, kind: str) -> Tensor:
    """Return ``(Q, k, k)`` similarities between each query's candidate texts (embedding cosine or ROUGE-L)."""
    if kind == "embedding":
        emb = gallery.embeddings[candidates]
        return emb @ emb.transpose(1, 2)
    q, k = candidates.shape
    firsts, seconds = [], []
    for row in candidates.tolist():
        for a in row:
            for b in row:
                firsts.append(gallery.texts[a])
                seconds.append(gallery.texts[b])
    # ROUGE-L F with beta > 1 is not symmetric: average both directions
    forward = np.asarray(rouge_l_scores(firsts, seconds)).reshape(q, k, k)
    return torch.from_numpy((forward + forward.transpose(0, 2, 1)) / 2).float()


def central_order(gallery: DraftGallery, chunk: int = 512) -> list[int]:
    """Return text indices by decreasing centrality: the mean word-overlap (Dice) with the gallery's rows.

    Dice of two texts' word sets is ``2 |A & B| / (|A| + |B|)``; a text's centrality averages it over every
    gallery row (its own rows included). The first text shares the most wording with a typical gallery
    text: the strongest single text written for every image when scores count shared words.
    """
    from scipy import sparse

    vocab: dict[str, int] = {}
    cols: list[int] = []
    indptr = [0]
    for text in gallery.texts:
        words = {vocab.setdefault(w, len(vocab)) for w in tokenize(text)}
        cols.extend(sorted(words))
        indptr.append(len(cols))
    sets = sparse.csr_matrix((np.ones(len(cols)), cols, indptr), shape=(len(gallery.texts), max(1, len(vocab))))
    sizes = np.diff(indptr).astype(np.float64)
    weight = np.bincount(gallery.row_text.numpy(), minlength=len(gallery.texts)).astype(np.float64)
    centrality = np.zeros(len(gallery.texts))
    for start in range(0, len(gallery.texts), chunk):
        shared = (sets[start:start + chunk] @ sets.T).toarray()
        dice = 2 * shared / np.maximum(sizes[start:start + chunk, None] + sizes[None, :], 1.0)
        centrality[start:start + chunk] = dice @ weight / weight.sum()
    return sorted(range(len(gallery.texts)), key=lambda i: (-centrality[i], i))


# ---------------------------------------------------------------- the evaluation task


def _gallery_dataset(ctx: EvalContext, name: str) -> Any:
    """Return the gallery split's dataset; unknown names or the evaluated split raise :class:`ConfigError`."""
    try:
        gallery = ctx.split_dataset(name)
    except ConfigError as exc:
        raise ConfigError(f"drafting: gallery split '{name}' not found ({exc}); choose a split of "
                          f"{ctx.dataset.manifest.where()} with --gallery-split or --set train_split=...") from None
    if gallery.split == ctx.dataset.split:
        raise ConfigError(f"drafting: the gallery split '{gallery.split}' is the evaluated split; draft from another "
                          "split (--gallery-split train)")
    if gallery.texts is None:
        raise TaskSkipped("drafting needs texts: the data config names no text column")
    return gallery


def build_gallery(ctx: EvalContext, gallery_ds: Any) -> tuple[DraftGallery, list[int]]:
    """Return the :class:`DraftGallery` of ``gallery_ds`` (rows with text) and the dataset positions of its rows."""
    texts_all = list(gallery_ds.texts)
    rows = [i for i, t in enumerate(texts_all) if t.strip()]
    if not rows:
        raise TaskSkipped(f"the gallery split '{gallery_ds.split}' has no non-empty text")
    distinct = list(dict.fromkeys(texts_all[i] for i in rows))
    where = {t: j for j, t in enumerate(distinct)}
    images = gallery_ds.paths.get("image", [None] * len(texts_all))
    return DraftGallery(
        texts=distinct, embeddings=text_embeddings(ctx, distinct),
        row_text=torch.tensor([where[texts_all[i]] for i in rows], dtype=torch.long),
        row_cases=[gallery_ds.patient_ids[i] for i in rows],
        row_images=[str(images[i]) if images[i] is not None else "" for i in rows],
    ), rows


def _row_embeddings(ctx: EvalContext, mode: str, gallery: DraftGallery, gallery_ds: Any,
                    gallery_rows: list[int]) -> tuple[Tensor, Tensor]:
    """Return each gallery row's embedding ``(R, E)`` (its text's or its image's) and which rows have one ``(R,)``."""
    if mode == "text":
        return gallery.embeddings[gallery.row_text], torch.ones(len(gallery_rows), dtype=torch.bool)
    emb, index = image_embeddings(ctx, gallery_ds)
    position = {p: j for j, p in enumerate(index)}
    ok = torch.tensor([r in position for r in gallery_rows], dtype=torch.bool)
    if not bool(ok.all()):
        log.warning("drafting: %d gallery row(s) failed to load and are left out", int((~ok).sum()))
    rows = torch.zeros(len(gallery_rows), emb.shape[1], dtype=emb.dtype)
    kept = ok.nonzero().flatten()
    rows[kept] = emb[[position[gallery_rows[int(j)]] for j in kept]]
    return rows, ok


@EVAL_TASKS.register("drafting")
def drafting(
    ctx: EvalContext, *, gallery_split: str | None = None, mode: str = "text", draft: str = "nearest", k: int = 5,
    consensus: str = "embedding", uncertain_as: int = 1, n_resamples: int | None = None, examples: int = 8,
) -> TaskResult:
    """Report scores of retrieval drafts (nearest, consensus of ``k``) and the random and central baselines."""
    check_choice("drafting.mode", mode, ("text", "image"))
    check_choice("drafting.draft", draft, ("nearest", "consensus"))
    check_choice("drafting.consensus", consensus, ("embedding", "rouge_l"))
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise ConfigError(f"drafting.k: expected an integer >= 2 (candidates for consensus), got {k!r}")
    if ctx.kind != "dual_encoder":
        raise TaskSkipped(f"retrieval drafting needs a dual encoder; this is a {ctx.kind} model")
    if ctx.dataset.texts is None:
        raise TaskSkipped("drafting needs reference texts (a text column in the data config)")
    gallery_ds = _gallery_dataset(ctx, gallery_split or ctx.config.train_split)
    gallery, gallery_rows = build_gallery(ctx, gallery_ds)
    queries, index = image_embeddings(ctx)
    keep = [j for j, i in enumerate(index) if ctx.dataset.texts[i].strip()]
    if not keep:
        raise TaskSkipped("no evaluated row has a reference text")
    queries, index = queries[keep], [index[j] for j in keep]
    images = ctx.dataset.paths.get("image", [None] * len(ctx.dataset))
    cases = [ctx.dataset.patient_ids[i] for i in index]
    files = [str(images[i]) if images[i] is not None else "" for i in index]
    top_k = min(k, len(gallery.texts))
    rng = np.random.default_rng(ctx.seed)
    order = central_order(gallery)
    chunks: list[dict[str, Tensor]] = []
    blocked_any = torch.zeros(len(gallery_rows), dtype=torch.bool)
    row_emb, row_ok = _row_embeddings(ctx, mode, gallery, gallery_ds, gallery_rows)
    for start in range(0, len(index), _QUERY_CHUNK):
        sl = slice(start, start + _QUERY_CHUNK)
        blocked = blocked_rows(gallery, cases[sl], files[sl])
        blocked_any |= blocked.any(0)
        row_scores = (queries[sl] @ row_emb.T).masked_fill(~row_ok, float("-inf"))
        scores = text_scores(row_scores, blocked, gallery.row_text, len(gallery.texts))
        best = torch.topk(scores, top_k, dim=1)
        allowed = torch.isfinite(text_scores(torch.zeros(blocked.shape), blocked, gallery.row_text, len(gallery.texts)))
        free = [(~b).nonzero().flatten().numpy() for b in blocked]
        chunks.append({
            "candidates": best.indices, "valid": torch.isfinite(best.values),
            "random": torch.tensor([int(gallery.row_text[int(rng.choice(f))]) if len(f) else -1 for f in free]),
            "central": torch.tensor([next((t for t in order if allowed[q, t]), -1) for q in range(len(free))]),
        })
    cand, ok = torch.cat([c["candidates"] for c in chunks]), torch.cat([c["valid"] for c in chunks])
    if not bool(ok[:, 0].all()):
        row = index[int((~ok[:, 0]).nonzero()[0, 0])]
        raise DataError(f"drafting: evaluated row {row} has no gallery text of another case to draft from")
    if bool(blocked_any.any()):
        log.warning("drafting: %d gallery row(s) share a case or image file with evaluated rows; they never draft "
                    "those rows (check that the splits are disjoint by patient)", int(blocked_any.sum()))
    picks = {"nearest": cand[:, 0], "consensus": consensus_pick(cand, ok, _candidate_similarity(cand, gallery, consensus)),
             "random": torch.cat([c["random"] for c in chunks]), "central": torch.cat([c["central"] for c in chunks])}
    drafts = {name: [gallery.texts[t] for t in chosen.tolist()] for name, chosen in picks.items()}
    references = [ctx.dataset.texts[i] for i in index]
    ordered = {draft: drafts[draft], **{n: d for n, d in drafts.items() if n != draft}}
    resamples = ctx.config.n_resamples if n_resamples is None else n_resamples
    metrics = score_drafts(ordered, references, main=draft, groups=ctx.patient_groups(index), n_resamples=resamples,
                           seed=ctx.seed, uncertain_as=uncertain_as, baselines=("random", "central"))
    shown = np.unique(np.linspace(0, len(index) - 1, min(examples, len(index))).round().astype(int))
    every = [{"row": index[i], "case": cases[i], "reference": references[i], **{n: drafts[n][i] for n in DRAFTS}}
             for i in range(len(index))]
    if ctx.out_dir is not None:  # every draft, one JSON line per evaluated row, for reading beside the scores
        (ctx.out_dir / "drafts.jsonl").write_text("".join(json.dumps(e) + "\n" for e in every), encoding="utf-8")
    artifacts = {
        "draft": draft, "mode": mode, "k": top_k, "consensus": consensus, "gallery": gallery_ds.split,
        "gallery_rows": len(gallery_rows), "gallery_texts": len(gallery.texts), "n_resamples": resamples,
        "gallery_rows_sharing_case_or_image": int(blocked_any.sum()),
        "central_text": gallery.texts[order[0]],
        "examples": [every[i] for i in shown], "drafts_file": "drafts.jsonl" if ctx.out_dir is not None else None,
    }
    return TaskResult(metrics=metrics, artifacts=artifacts, n=len(index))


__all__ = ["DRAFTS", "DraftGallery", "ReportStats", "blocked_rows", "build_gallery", "central_order", "consensus_pick",
           "drafting", "report_scores", "report_stats", "score_drafts", "text_scores"]
