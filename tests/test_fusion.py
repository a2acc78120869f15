"""Fusion zoo: shapes, gradients, masking guarantees, parameter counts, reference parity, ModalityDropout."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import Tensor

from medfuse.core.errors import ConfigError
from medfuse.models.base import FUSIONS, Fusion
from medfuse.models.fusion import (
    CrossAttentionFusion,
    GatedFusion,
    HierarchicalFusion,
    LateFusion,
    LowRankFusion,
    ModalityDropout,
    TensorFusion,
    WeightedFusion,
    build_fusion,
    fusion_params,
    masked_softmax,
)

DIMS = {"image": 12, "text": 7, "vitals": 5}
DIM = 16
BATCH = 4
NAMES = ["concat", "weighted", "gated", "tensor", "low_rank", "cross_attention", "hierarchical", "late"]
CASES: list[tuple[str, dict[str, Any]]] = [
    ("concat", {}),
    ("weighted", {"norm": True}),
    ("gated", {}),
    ("gated", {"gate": "sigmoid"}),
    ("tensor", {"hidden": {"image": 3, "text": 4, "vitals": 2}}),
    ("low_rank", {"rank": 3}),
    ("cross_attention", {"heads": 2, "layers": 2}),
    ("cross_attention", {"heads": 2, "pool": "modality"}),
    ("cross_attention", {"heads": 2, "pool": "joint"}),
    ("hierarchical", {}),
    ("late", {"mode": "mean"}),
    ("late", {"mode": "learned"}),
    ("late", {"mode": "stacking"}),
]
IDS = [
    f"{name}-{'-'.join(f'{k}={v}' for k, v in params.items() if k != 'hidden')}".rstrip("-")
    for name, params in CASES
]
# sample 3 has no modality at all; every modality is absent somewhere and present somewhere
MASK = {
    "image": torch.tensor([True, False, True, False]),
    "text": torch.tensor([True, True, False, False]),
    "vitals": torch.tensor([False, True, True, False]),
}


def make(name: str, params: dict[str, Any], dims: dict[str, int] = DIMS, seed: int = 0) -> Fusion:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return build_fusion(name, dims, DIM, **params).eval()


def inputs(seed: int = 1, batch: int = BATCH, dims: dict[str, int] = DIMS) -> dict[str, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {name: torch.randn(batch, size, generator=gen) for name, size in dims.items()}


def test_registry_holds_exactly_the_eight_fusions() -> None:
    assert set(NAMES) <= set(FUSIONS.names())
    assert {name for name, _ in CASES} == set(NAMES)
    for name in NAMES:
        assert FUSIONS.describe(name), f"{name} has no docstring"


def test_unknown_names_fail_with_close_matches() -> None:
    with pytest.raises(ConfigError, match="did you mean 'gated'"):
        build_fusion("gatd", DIMS, DIM)
    with pytest.raises(ConfigError, match="did you mean 'rank'"):
        build_fusion("low_rank", DIMS, DIM, rnak=2)
    assert fusion_params("late") == ["mode", "hidden", "activation", "norm", "dropout"]


@pytest.mark.parametrize(("name", "params"), CASES, ids=IDS)
def test_shape_and_determinism(name: str, params: dict[str, Any]) -> None:
    fusion = make(name, params)
    features = inputs()
    out = fusion(features, MASK)
    assert fusion.output_dim == DIM
    assert out.shape == (BATCH, DIM) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert torch.equal(out, fusion(features, MASK))
    assert torch.equal(fusion(features), fusion(features, None))


@pytest.mark.parametrize(("name", "params"), CASES, ids=IDS)
def test_gradients_reach_every_present_input_and_no_absent_one(name: str, params: dict[str, Any]) -> None:
    fusion = make(name, params)
    features = {k: v.requires_grad_() for k, v in inputs().items()}
    probe = torch.randn(BATCH, DIM, generator=torch.Generator().manual_seed(5))
    (fusion(features) * probe).sum().backward()
    for key, values in features.items():
        assert values.grad is not None and torch.isfinite(values.grad).all()
        assert (values.grad.abs().sum(dim=1) > 0).all(), f"{key} gets no gradient for some sample"
    for pname, param in fusion.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, f"parameter {pname} gets no gradient"

    features = {k: v.detach().clone().requires_grad_() for k, v in features.items()}
    (fusion(features, MASK) * probe).sum().backward()
    for key, values in features.items():
        assert values.grad is not None
        row_grad = values.grad.abs().sum(dim=1)
        assert torch.equal(row_grad[~MASK[key]], torch.zeros(int((~MASK[key]).sum())))
        assert (row_grad[MASK[key]] > 0).all()


@pytest.mark.parametrize(("name", "params"), CASES, ids=IDS)
def test_absent_modality_cannot_change_the_output(name: str, params: dict[str, Any]) -> None:
    fusion = make(name, params)
    features = inputs()
    reference = fusion(features, MASK)
    noise = inputs(seed=2)
    for scale in (1e6, float("nan"), float("inf")):
        perturbed = {
            key: torch.where(MASK[key].unsqueeze(1), values, noise[key] * 1e6 if scale == 1e6 else scale)
            for key, values in features.items()
        }
        assert torch.equal(fusion(perturbed, MASK), reference), f"absent features leak (scale {scale})"


@pytest.mark.parametrize(("name", "params"), CASES, ids=IDS)
def test_missing_key_means_absent_and_all_absent_is_finite(name: str, params: dict[str, Any]) -> None:
    fusion = make(name, params)
    features = inputs()
    without_text = {k: v for k, v in features.items() if k != "text"}
    text_off = {k: torch.ones(BATCH, dtype=torch.bool) for k in DIMS} | {
        "text": torch.zeros(BATCH, dtype=torch.bool)
    }
    assert torch.equal(fusion(without_text), fusion(features, text_off))

    nothing = {k: torch.zeros(BATCH, dtype=torch.bool) for k in DIMS}
    out = fusion(features, nothing)
    assert torch.isfinite(out).all()
    assert torch.equal(out, fusion(inputs(seed=9), nothing))  # no sample sees any feature
    assert torch.equal(out[0], out[1])


@pytest.mark.parametrize(("name", "params"), CASES, ids=IDS)
def test_samples_are_fused_independently(name: str, params: dict[str, Any]) -> None:
    fusion = make(name, params)
    features = inputs()
    full = fusion(features, MASK)
    for index in range(BATCH):
        alone = fusion(
            {k: v[index : index + 1] for k, v in features.items()},
            {k: m[index : index + 1] for k, m in MASK.items()},
        )
        torch.testing.assert_close(alone[0], full[index], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("name", "params"), CASES, ids=IDS)
def test_bad_inputs_are_reported(name: str, params: dict[str, Any]) -> None:
    fusion = make(name, params)
    features = inputs()
    with pytest.raises(ValueError, match="unknown modality 'audio'"):
        fusion(features | {"audio": torch.zeros(BATCH, 3)})
    with pytest.raises(ValueError, match="'text'"):
        fusion(features | {"text": torch.zeros(BATCH, DIMS["text"] + 1)})
    with pytest.raises(ValueError, match=r"mask\['image'\]"):
        fusion(features, {"image": torch.ones(BATCH + 1, dtype=torch.bool)})
    with pytest.raises(ValueError, match="batch size"):
        fusion(features | {"vitals": torch.zeros(BATCH + 1, DIMS["vitals"])})


def test_tensor_fusion_parameter_count_matches_formula() -> None:
    for hidden in (8, {"image": 3, "text": 4, "vitals": 2}):
        fusion = TensorFusion(DIMS, DIM, hidden=hidden)
        d = {k: hidden if isinstance(hidden, int) else hidden[k] for k in DIMS}
        expected = sum(DIMS[k] * d[k] + d[k] for k in DIMS) + math.prod(d[k] + 1 for k in DIMS) * DIM + DIM
        assert sum(p.numel() for p in fusion.parameters()) == expected


def test_tensor_fusion_absent_modality_keeps_only_the_constant() -> None:
    # with "text" absent, the product equals the two-modality TFN over image and vitals embedded in 3-D
    fusion = make("tensor", {"hidden": 2})
    assert isinstance(fusion, TensorFusion)
    features = inputs()
    off = {"text": torch.zeros(BATCH, dtype=torch.bool)}
    z = {k: fusion.activation(fusion.projections[k](features[k])) for k in ("image", "vitals")}
    one = torch.ones(BATCH, 1)
    outer = torch.einsum(
        "bi,bj,bk->bijk",
        torch.cat([one, z["image"]], 1),
        torch.cat([one, torch.zeros(BATCH, 2)], 1),
        torch.cat([one, z["vitals"]], 1),
    )
    expected = fusion.activation(fusion.output(outer.flatten(1)))
    torch.testing.assert_close(fusion(features, off), expected)


@pytest.mark.parametrize("rank", [1, 4])
def test_low_rank_parameter_count_matches_formula(rank: int) -> None:
    fusion = LowRankFusion(DIMS, DIM, rank=rank)
    expected = sum(rank * (size + 1) * DIM for size in DIMS.values()) + rank + DIM
    assert sum(p.numel() for p in fusion.parameters()) == expected


def test_low_rank_equals_the_full_tensor_it_factorises() -> None:
    fusion = make("low_rank", {"rank": 3}, dims={"a": 3, "b": 2, "c": 4})
    assert isinstance(fusion, LowRankFusion)
    with torch.no_grad():
        fusion.bias.normal_()
        fusion.rank_weights.normal_()
    features = inputs(dims={"a": 3, "b": 2, "c": 4})
    mask = {"b": torch.tensor([True, False, True, True])}
    f = {k: fusion.factors[k].detach() for k in "abc"}
    # W[i, j, k, d] = sum_r w_r W_a[r, i, d] W_b[r, j, d] W_c[r, k, d]  (Liu et al. 2018, Eq. 4-6)
    weight = torch.einsum("r,rid,rjd,rkd->ijkd", fusion.rank_weights.detach(), f["a"], f["b"], f["c"])
    z = {k: torch.cat([torch.ones(BATCH, 1), v], 1) for k, v in features.items()}
    z["b"][~mask["b"], 1:] = 0.0
    expected = torch.einsum("bi,bj,bk,ijkd->bd", z["a"], z["b"], z["c"], weight) + fusion.bias.detach()
    torch.testing.assert_close(fusion(features, mask), expected, rtol=1e-5, atol=1e-5)


def test_gated_softmax_is_the_gmu_for_two_modalities() -> None:
    dims = {"visual": 6, "textual": 4}
    fusion = make("gated", {}, dims=dims)
    assert isinstance(fusion, GatedFusion)
    features = inputs(dims=dims)
    joint = torch.cat([features["visual"], features["textual"], torch.ones(BATCH, 2)], 1)
    logits = fusion.gate(joint).view(BATCH, 2, DIM)
    z = torch.sigmoid(logits[:, 0] - logits[:, 1])
    h_v = torch.tanh(fusion.projections["visual"](features["visual"]))
    h_t = torch.tanh(fusion.projections["textual"](features["textual"]))
    torch.testing.assert_close(fusion(features), z * h_v + (1 - z) * h_t)


@pytest.mark.parametrize("gate", ["softmax", "sigmoid"])
def test_gated_gates_close_absent_modalities(gate: str) -> None:
    fusion = make("gated", {"gate": gate})
    assert isinstance(fusion, GatedFusion)
    masked, present = fusion.gather(inputs(), MASK)
    gates = fusion.gates(masked, present)  # (B, M, dim)
    assert torch.equal(gates[~present], torch.zeros(int((~present).sum()), DIM))
    if gate == "softmax":
        torch.testing.assert_close(gates.sum(1), present.any(1, keepdim=True).float().expand(-1, DIM))


def test_hierarchical_gates_cover_the_available_levels() -> None:
    fusion = make("hierarchical", {})
    assert isinstance(fusion, HierarchicalFusion)
    masked, present = fusion.gather(inputs(), MASK)
    levels, available, gates = fusion.levels(masked, present)
    assert levels.shape == (BATCH, 4, DIM) and torch.equal(available[:, 0], present.any(1))
    assert torch.equal(gates[~available], torch.zeros(int((~available).sum())))
    torch.testing.assert_close(gates.sum(1), present.any(1).float())


@pytest.mark.parametrize(("name", "mode"), [("weighted", None), ("late", "mean"), ("late", "learned")])
def test_weights_renormalise_over_present_modalities(name: str, mode: str | None) -> None:
    fusion = make(name, {} if mode is None else {"mode": mode})
    assert isinstance(fusion, (WeightedFusion, LateFusion))
    logits = torch.zeros(3) if mode == "mean" else torch.tensor([0.5, -1.0, 2.0])
    if mode != "mean":
        with torch.no_grad():
            fusion.logits.copy_(logits)  # type: ignore[union-attr]
    features = inputs()
    parts = fusion.projections if isinstance(fusion, WeightedFusion) else fusion.heads
    vectors = {k: parts[k](features[k]) for k in DIMS}
    out = fusion(features, MASK)
    for index in range(BATCH):
        keys = [k for k in DIMS if MASK[k][index]]
        if not keys:
            assert torch.equal(out[index], torch.zeros(DIM))
            continue
        w = torch.softmax(torch.stack([logits[list(DIMS).index(k)] for k in keys]), 0)
        expected = sum(w[j] * vectors[k][index] for j, k in enumerate(keys))
        torch.testing.assert_close(out[index], expected)
    if isinstance(fusion, LateFusion):
        decisions, present = fusion.modality_decisions(features, MASK)
        assert decisions.shape == (BATCH, 3, DIM) and torch.equal(present[:, 0], MASK["image"])


def test_masked_softmax_handles_rows_without_entries() -> None:
    logits = torch.tensor([[1.0, 2.0, 3.0], [5.0, -1.0, 0.0]], requires_grad=True)
    present = torch.tensor([[True, False, True], [False, False, False]])
    weights = masked_softmax(logits, present)
    torch.testing.assert_close(
        weights[0], torch.tensor([torch.sigmoid(torch.tensor(-2.0)), 0.0, torch.sigmoid(torch.tensor(2.0))])
    )
    assert torch.equal(weights[1], torch.zeros(3))
    (weights * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all() and logits.grad[0, 1] == 0


def token_inputs(seed: int = 3) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    lengths = {"image": 5, "text": 6, "vitals": 1}
    features = {k: torch.randn(BATCH, lengths[k], DIMS[k], generator=gen) for k in DIMS}
    token_masks = {
        "image": torch.ones(BATCH, 5, dtype=torch.bool),
        "text": torch.arange(6).expand(BATCH, 6) < torch.tensor([[6], [3], [1], [4]]),
    }
    return features, token_masks


def test_cross_attention_padding_tokens_cannot_change_the_output() -> None:
    fusion = make("cross_attention", {"heads": 2, "layers": 2})
    assert fusion.uses_tokens
    features, token_masks = token_inputs()
    reference = fusion(features, MASK, token_masks=token_masks)
    assert reference.shape == (BATCH, DIM) and torch.isfinite(reference).all()
    pad = ~token_masks["text"]
    for fill in (1e6, float("nan")):
        perturbed = features | {"text": features["text"].masked_fill(pad.unsqueeze(-1), fill)}
        assert torch.equal(fusion(perturbed, MASK, token_masks=token_masks), reference)
    # real tokens do matter
    changed = features | {"text": features["text"] + 1.0}
    assert not torch.allclose(
        fusion(changed, token_masks=token_masks), fusion(features, token_masks=token_masks)
    )


def test_cross_attention_token_gradients_and_equivalences() -> None:
    fusion = make("cross_attention", {"heads": 2})
    features, token_masks = token_inputs()
    features = {k: v.requires_grad_() for k, v in features.items()}
    fusion(features, token_masks=token_masks).square().sum().backward()
    text_grad = features["text"].grad.abs().sum(-1)  # type: ignore[union-attr]
    assert torch.equal(text_grad[~token_masks["text"]], torch.zeros(int((~token_masks["text"]).sum())))
    assert (text_grad[token_masks["text"]] > 0).all()
    assert (features["image"].grad.abs().sum(-1) > 0).all()  # type: ignore[union-attr]

    features = {k: v.detach() for k, v in features.items()}
    # a (B, D) input is one token
    flat = features | {"vitals": features["vitals"][:, 0]}
    assert torch.equal(fusion(flat, token_masks=token_masks), fusion(features, token_masks=token_masks))
    # a modality whose tokens are all padding is the same as an absent one
    all_pad = token_masks | {"text": torch.zeros(BATCH, 6, dtype=torch.bool)}
    text_off = {"text": torch.zeros(BATCH, dtype=torch.bool)}
    assert torch.equal(
        fusion(features, token_masks=all_pad), fusion(features, text_off, token_masks=token_masks)
    )
    # padding is the same as a shorter sequence (sample 1 has 3 real text tokens)
    one = {k: v[1:2] for k, v in features.items()}
    padded = fusion(one, token_masks={"text": token_masks["text"][1:2]})
    torch.testing.assert_close(padded, fusion(one | {"text": one["text"][:, :3]}))
    with pytest.raises(ValueError, match=r"token_masks\['text'\]"):
        fusion(features, token_masks={"text": torch.ones(BATCH, 5, dtype=torch.bool)})


def test_cross_attention_works_with_two_modalities_and_rejects_one() -> None:
    dims = {"image": 8, "text": 6}
    fusion = make("cross_attention", {"heads": 4, "hidden": 8}, dims=dims)
    assert isinstance(fusion, CrossAttentionFusion)
    assert fusion(inputs(dims=dims)).shape == (BATCH, DIM)
    with pytest.raises(ConfigError, match="input_dims"):
        CrossAttentionFusion({"image": 8}, DIM)
    with pytest.raises(ConfigError, match="heads"):
        CrossAttentionFusion(dims, DIM, heads=3)


def test_cross_attention_joint_pool_is_means_and_their_product() -> None:
    dims = {"image": 8, "text": 6}
    torch.manual_seed(0)
    fusion = CrossAttentionFusion(dims, DIM, heads=2, hidden=8, pool="joint").eval()
    feats = {"image": torch.randn(BATCH, 5, 8), "text": torch.randn(BATCH, 3, 6)}
    means: list[torch.Tensor] = []
    fusion.output.register_forward_pre_hook(lambda _m, args: means.append(args[0]))
    fused = fusion(feats)
    tokens, valid = fusion._streams(feats, fusion.presence(feats, None), None)
    for block in fusion.blocks:
        tokens, valid = block(tokens, valid), valid
    image, text = tokens["image"].mean(1), tokens["text"].mean(1)
    torch.testing.assert_close(means[0], torch.cat([image, text, image * text], -1))
    assert fused.shape == (BATCH, DIM) and fusion.output.in_features == 3 * 8


@pytest.mark.parametrize(
    ("name", "params", "field"),
    [
        ("concat", {"activation": "swishy"}, "activation"),
        ("concat", {"dropout": 1.5}, "dropout"),
        ("gated", {"gate": "relu"}, "gate"),
        ("late", {"mode": "vote"}, "mode"),
        ("late", {"hidden": 0}, "hidden"),
        ("low_rank", {"rank": 0}, "rank"),
        ("tensor", {"hidden": {"image": 2}}, "hidden"),
        ("tensor", {"hidden": 64}, "hidden"),
        ("cross_attention", {"layers": 0}, "layers"),
        ("cross_attention", {"pool": "max"}, "pool"),
    ],
)
def test_bad_parameters_name_the_field(name: str, params: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        build_fusion(name, DIMS, DIM, **params)


@pytest.mark.parametrize("name", NAMES)
def test_bad_dims_name_the_field(name: str) -> None:
    with pytest.raises(ConfigError, match="dim"):
        build_fusion(name, DIMS, 0)
    with pytest.raises(ConfigError, match="input_dims"):
        build_fusion(name, {}, DIM)
    with pytest.raises(ConfigError, match=r"input_dims.text"):
        build_fusion(name, DIMS | {"text": -3}, DIM)


def test_modality_dropout_is_identity_in_eval_and_at_zero() -> None:
    mask = {k: torch.rand(64) < 0.7 for k in DIMS}
    dropout = ModalityDropout(0.5).eval()
    assert all(torch.equal(dropout(mask)[k], mask[k]) for k in DIMS)
    assert all(torch.equal(ModalityDropout(0.0).train()(mask)[k], mask[k]) for k in DIMS)


def test_modality_dropout_keeps_one_present_modality_and_never_adds_one() -> None:
    gen = torch.Generator().manual_seed(0)
    batch = 4000
    mask = {k: torch.rand(batch, generator=gen) < 0.8 for k in DIMS}
    mask["image"][:50] = False
    mask["text"][:50] = False
    mask["vitals"][:25] = False  # rows 0..24 have nothing, rows 25..49 only vitals
    mask["vitals"][25:50] = True
    dropout = ModalityDropout(0.3, generator=torch.Generator().manual_seed(1)).train()
    out = dropout(mask)
    before = torch.stack([mask[k] for k in DIMS], 1)
    after = torch.stack([out[k] for k in DIMS], 1)
    assert not (after & ~before).any()
    assert torch.equal(after.any(1), before.any(1))
    assert after[25:50, 2].all()
    rate = 1 - after.sum().item() / before.sum().item()
    # each of k present modalities drops with p, except that one survives when all k would go
    counts = before.sum(1)
    expected = sum(((k * 0.3 - 0.3**k) * (counts == k).sum()).item() for k in (1, 2, 3)) / before.sum().item()
    assert abs(rate - expected) < 0.02 and rate > 0.2


def test_modality_dropout_is_reproducible_with_a_generator() -> None:
    mask = {k: torch.ones(256, dtype=torch.bool) for k in DIMS}
    first = ModalityDropout(0.4, generator=torch.Generator().manual_seed(7)).train()
    second = ModalityDropout(0.4, generator=torch.Generator().manual_seed(7)).train()
    a, b = first(mask), second(mask)
    assert all(torch.equal(a[k], b[k]) for k in DIMS)
    assert not all(torch.equal(a[k], first(mask)[k]) for k in DIMS)  # later draws differ


@pytest.mark.parametrize("p", [1.0, -0.1, True, "0.2"])
def test_modality_dropout_rejects_bad_probabilities(p: Any) -> None:
    with pytest.raises(ConfigError, match="p:"):
        ModalityDropout(p)
