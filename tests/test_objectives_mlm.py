"""BERT masking statistics and the masked-language-modelling loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medfuse.core.errors import ConfigError
from medfuse.objectives import MLMLoss, mask_tokens, mlm_loss

VOCAB, PAD, CLS, SEP, MASK = 1000, 0, 1, 2, 3
SPECIAL = (PAD, CLS, SEP, MASK)


def _batch(rows: int = 64, length: int = 512, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, VOCAB, (rows, length), generator=g)
    lengths = torch.randint(length // 2, length + 1, (rows,), generator=g)
    attention = (torch.arange(length).unsqueeze(0) < lengths.unsqueeze(1)).long()
    ids[:, 0] = CLS
    ids[torch.arange(rows), lengths - 1] = SEP
    ids[attention == 0] = PAD
    return ids, attention


def test_masking_follows_bert_proportions_and_spares_special_and_padding_tokens():
    ids, attention = _batch()
    masked, labels = mask_tokens(
        ids, attention, VOCAB, MASK, SPECIAL, prob=0.15, generator=torch.Generator().manual_seed(1)
    )
    eligible = (attention == 1) & ~torch.isin(ids, torch.tensor(SPECIAL))
    selected = labels != -100
    assert not bool((selected & ~eligible).any())
    assert torch.equal(labels[selected], ids[selected])
    assert torch.equal(masked[~selected], ids[~selected])
    n = int(selected.sum())
    assert n / int(eligible.sum()) == pytest.approx(0.15, abs=0.006)
    became_mask = (masked[selected] == MASK).float().mean().item()
    unchanged = (masked[selected] == ids[selected]).float().mean().item()
    replaced = masked[selected][(masked[selected] != MASK) & (masked[selected] != ids[selected])]
    assert became_mask == pytest.approx(0.8, abs=0.015)
    assert unchanged == pytest.approx(0.1, abs=0.01)
    assert replaced.numel() / n == pytest.approx(0.1, abs=0.01)
    assert not bool(torch.isin(replaced, torch.tensor(SPECIAL)).any())  # never a special token drawn
    # Replacements are uniform over the non-special ids: as many distinct ids as uniform draws give.
    choices = VOCAB - len(SPECIAL)
    expected_distinct = choices * (1 - (1 - 1 / choices) ** replaced.numel())
    assert replaced.unique().numel() == pytest.approx(expected_distinct, rel=0.05)


def test_masking_is_reproducible_and_keeps_dtype():
    ids, attention = _batch(rows=4, length=32)
    ids32 = ids.int()
    first = mask_tokens(ids32, attention, VOCAB, MASK, SPECIAL, generator=torch.Generator().manual_seed(5))
    again = mask_tokens(ids32, attention, VOCAB, MASK, SPECIAL, generator=torch.Generator().manual_seed(5))
    other = mask_tokens(ids32, attention, VOCAB, MASK, SPECIAL, generator=torch.Generator().manual_seed(6))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[1], other[1])
    assert first[0].dtype == torch.int32 and first[1].dtype == torch.int64


def test_mlm_loss_is_cross_entropy_over_masked_positions_only():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 7, 11, generator=g, requires_grad=True)
    labels = torch.full((3, 7), -100)
    labels[0, 2], labels[1, 5], labels[2, 0], labels[2, 6] = 4, 9, 0, 10
    out = MLMLoss()(logits, labels)
    expected = F.cross_entropy(logits.reshape(-1, 11), labels.reshape(-1), ignore_index=-100)
    torch.testing.assert_close(out.total, expected)
    manual = -torch.stack(
        [torch.log_softmax(logits[b, t], -1)[labels[b, t]] for b, t in [(0, 2), (1, 5), (2, 0), (2, 6)]]
    ).mean()
    torch.testing.assert_close(out.total, manual)
    assert out.parts["masked"].item() == 4
    out.total.backward()
    assert logits.grad[0, 0].abs().sum() == 0 and logits.grad[0, 2].abs().sum() > 0


def test_mlm_loss_without_masked_tokens_is_a_connected_zero():
    logits = torch.randn(2, 3, 5, requires_grad=True)
    out = mlm_loss(logits, torch.full((2, 3), -100))
    assert out.total.item() == 0.0
    out.total.backward()
    assert logits.grad is not None and bool((logits.grad == 0).all())


def test_bad_masking_inputs_raise():
    ids, attention = _batch(rows=2, length=8)
    with pytest.raises(ConfigError, match="mask_token_id"):
        mask_tokens(ids, attention, VOCAB, VOCAB + 1, SPECIAL)
    with pytest.raises(ConfigError, match="attention_mask"):
        mask_tokens(ids, attention[:, :4], VOCAB, MASK, SPECIAL)
    with pytest.raises(ConfigError, match="outside the vocabulary"):
        mask_tokens(ids, attention, 10, MASK, SPECIAL)
    with pytest.raises(ConfigError, match="labels"):
        mlm_loss(torch.randn(2, 8, 5), torch.zeros(2, 7, dtype=torch.long))
