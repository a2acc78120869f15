"""Image-text matching: hard-negative mining and the ITM loss over positives and mined negatives."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from medfuse.core.errors import ConfigError
from medfuse.objectives import ITMLoss, mine_hard_negatives


def _sim(batch: int = 6, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, batch, generator=torch.Generator().manual_seed(seed)) * 3


def test_argmax_mining_matches_a_loop_and_never_picks_positives():
    sim = _sim()
    groups = torch.tensor([0, 1, 1, 2, 3, 3])
    picked = mine_hard_negatives(sim, groups=groups, strategy="argmax")
    for i in range(6):
        candidates = [j for j in range(6) if j != i and groups[j] != groups[i]]
        assert picked[i].item() == max(candidates, key=lambda j: sim[i, j].item())


def test_sampled_negatives_follow_the_softmax_over_non_positives():
    # One call on a (2000, 2000) matrix whose columns fall into 4 classes of equal similarity: every row
    # draws a class with probability proportional to (columns of that class it may pick) * exp(similarity).
    per_class, levels = 500, torch.tensor([2.0, 1.0, 0.0, -1.0])
    batch = 4 * per_class
    column_class = torch.arange(batch) % 4
    sim = levels[column_class].expand(batch, batch).clone()
    picked = mine_hard_negatives(sim, generator=torch.Generator().manual_seed(0))
    assert not bool((picked == torch.arange(batch)).any())
    available = per_class - (column_class.view(-1, 1) == torch.arange(4)).float()  # (B, 4) minus the positive
    expected = (available * levels.exp()).div((available * levels.exp()).sum(1, keepdim=True)).mean(0)
    observed = torch.bincount(column_class[picked], minlength=4).float() / batch
    torch.testing.assert_close(observed, expected, atol=0.035, rtol=0)  # ~3 sigma at n=2000


def test_sampling_is_reproducible_with_a_generator():
    sim = _sim(16)
    first = mine_hard_negatives(sim, generator=torch.Generator().manual_seed(3))
    again = mine_hard_negatives(sim, generator=torch.Generator().manual_seed(3))
    other = [mine_hard_negatives(sim, generator=torch.Generator().manual_seed(s)) for s in range(4, 8)]
    assert torch.equal(first, again)
    assert any(not torch.equal(first, o) for o in other)


def test_duplicates_are_never_mined_and_rows_without_negatives_get_minus_one():
    sim = torch.zeros(4, 4)
    sim[0, 1] = 50.0  # pair 1 has the same caption as pair 0: the hardest "negative" is a positive
    groups = torch.tensor([7, 7, 8, 8])
    generator = torch.Generator().manual_seed(0)
    for _ in range(50):
        picked = mine_hard_negatives(sim, groups=groups, generator=generator)
        assert picked[0].item() in (2, 3) and picked[1].item() in (2, 3)
    everything_same = mine_hard_negatives(sim, groups=torch.zeros(4, dtype=torch.long))
    assert everything_same.tolist() == [-1, -1, -1, -1]


class _Bilinear(nn.Module):
    """A scorer ``s(x, y) = x^T W y`` on (N, D) features, or on token means of a mapping."""

    def __init__(self, dim: int, two_class: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(dim, dim, generator=torch.Generator().manual_seed(1)) * 0.3)
        self.two_class = two_class

    def forward(self, image, text):
        if isinstance(text, dict):
            text = (text["tokens"] * text["mask"].unsqueeze(-1)).sum(1) / text["mask"].sum(1, keepdim=True)
        score = ((image @ self.weight) * text).sum(-1)
        return torch.stack([-score, score], dim=1) if self.two_class else score


def test_itm_loss_equals_bce_over_positives_and_mined_negatives():
    g = torch.Generator().manual_seed(0)
    image, text = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    image.requires_grad_()
    scorer = _Bilinear(4)
    out = ITMLoss(strategy="argmax")(scorer, image, text)
    sim = F.normalize(image.detach(), dim=-1) @ F.normalize(text.detach(), dim=-1).T
    neg_text = mine_hard_negatives(sim, strategy="argmax")
    neg_image = mine_hard_negatives(sim.T, strategy="argmax")
    pairs = [(i, i, 1.0) for i in range(5)] + [(i, int(neg_text[i]), 0.0) for i in range(5)]
    pairs += [(int(neg_image[j]), j, 0.0) for j in range(5)]
    expected = torch.stack(
        [
            F.binary_cross_entropy_with_logits(scorer(image[i : i + 1], text[j : j + 1])[0], torch.tensor(y))
            for i, j, y in pairs
        ]
    ).mean()
    torch.testing.assert_close(out.total, expected)
    out.total.backward()
    assert scorer.weight.grad is not None and image.grad is not None
    assert 0.0 <= out.parts["accuracy"].item() <= 1.0


def test_itm_two_class_scorer_and_token_features_with_given_similarities():
    g = torch.Generator().manual_seed(0)
    image = torch.randn(4, 3, generator=g)
    text = {"tokens": torch.randn(4, 6, 3, generator=g), "mask": torch.ones(4, 6)}
    text["mask"][:, 4:] = 0
    sim = _sim(4, seed=2)
    two = ITMLoss(strategy="argmax")(_Bilinear(3, two_class=True), image, text, sim=sim)
    one = ITMLoss(strategy="argmax")(_Bilinear(3), image, text, sim=sim)
    # CE over (-s, s) equals BCE on 2s: the same pairs were scored, so the two must agree.
    scorer = _Bilinear(3)
    doubled = ITMLoss(strategy="argmax")(lambda x, y: 2 * scorer(x, y), image, text, sim=sim)
    torch.testing.assert_close(two.total, doubled.total)
    assert not torch.isclose(one.total, two.total)


def test_itm_rejects_bad_scores_and_missing_similarities():
    image, text = torch.randn(3, 4), torch.randn(3, 4)
    with pytest.raises(ConfigError, match="scorer must return"):
        ITMLoss()(
            lambda x, y: torch.zeros(len(x), 3), image, text, generator=torch.Generator().manual_seed(0)
        )
    with pytest.raises(ConfigError, match="sim="):
        ITMLoss()(_Bilinear(4), image[:, None], text[:, None])
    with pytest.raises(ConfigError, match="strategy"):
        ITMLoss(strategy="hardest")
    with pytest.raises(ConfigError, match="square"):
        mine_hard_negatives(torch.zeros(3, 4))
