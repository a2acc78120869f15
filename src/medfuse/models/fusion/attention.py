"""Token-level fusion by co-attention: every modality's tokens attend to every other modality's tokens."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from medfuse.core.config import check_choice
from medfuse.core.errors import ConfigError
from medfuse.models.base import FUSIONS
from medfuse.models.fusion._common import ModalityFusion, check_positive_int, check_probability


class CoAttentionBlock(nn.Module):
    """One co-attention layer over M token streams (post-norm, as in BERT/ViLBERT).

    For each ordered pair ``(a, b)``, ``a != b``, the tokens of ``a`` query the tokens of ``b``
    (``nn.MultiheadAttention`` with ``b``'s padding as ``key_padding_mask``). Stream ``a`` is updated
    with the mean of those contexts over the streams that have at least one valid token in the sample:
    ``x_a = LN(x_a + mean_b CA(x_a, x_b))``, then ``x_a = LN(x_a + FFN(x_a))``.

    Shapes: ``tokens[m]`` (B, N_m, width), ``valid[m]`` (B, N_m) bool -> same shapes.
    """

    def __init__(
        self, modalities: tuple[str, ...], width: int, heads: int, dropout: float, ffn_mult: int
    ) -> None:
        super().__init__()
        self.modalities = modalities
        self.attention = nn.ModuleDict(
            {
                query: nn.ModuleDict(
                    {
                        key: nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
                        for key in modalities
                        if key != query
                    }
                )
                for query in modalities
            }
        )
        self.attention_norm = nn.ModuleDict({name: nn.LayerNorm(width) for name in modalities})
        self.ffn = nn.ModuleDict(
            {
                name: nn.Sequential(
                    nn.Linear(width, ffn_mult * width), nn.GELU(), nn.Linear(ffn_mult * width, width)
                )
                for name in modalities
            }
        )
        self.ffn_norm = nn.ModuleDict({name: nn.LayerNorm(width) for name in modalities})
        self.dropout = nn.Dropout(dropout)

    def forward(self, tokens: Mapping[str, Tensor], valid: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Return the updated ``(B, N_m, width)`` token streams."""
        has_keys = {name: valid[name].any(dim=1) for name in self.modalities}
        padding = {}
        for name in self.modalities:
            # A stream with no valid key in a sample still gets one unmasked slot so the softmax stays
            # finite; its context is discarded below through ``has_keys``.
            first = torch.arange(valid[name].shape[1], device=valid[name].device) == 0
            padding[name] = ~valid[name] & ~(first & ~has_keys[name].unsqueeze(1))
        updated = {}
        for query in self.modalities:
            states = tokens[query]
            attention_to = self.attention[query]
            assert isinstance(attention_to, nn.ModuleDict)
            context = torch.zeros_like(states)
            sources = torch.zeros(states.shape[0], 1, 1, dtype=states.dtype, device=states.device)
            for key in self.modalities:
                if key == query:
                    continue
                attended, _ = attention_to[key](
                    states, tokens[key], tokens[key], key_padding_mask=padding[key], need_weights=False
                )
                usable = has_keys[key].view(-1, 1, 1)
                context = context + torch.where(usable, attended, torch.zeros_like(attended))
                sources = sources + usable.to(states.dtype)
            states = self.attention_norm[query](states + self.dropout(context / sources.clamp(min=1.0)))
            updated[query] = self.ffn_norm[query](states + self.dropout(self.ffn[query](states)))
        return updated


@FUSIONS.register("cross_attention")
class CrossAttentionFusion(ModalityFusion):
    """Bidirectional cross-attention between token streams, masked mean pooling, Linear to ``dim``.

    The co-attention of ViLBERT (Lu, Batra, Parikh & Lee, "ViLBERT: Pretraining Task-Agnostic
    Visiolinguistic Representations for Vision-and-Language Tasks", NeurIPS 2019, Sec. 3.1, Fig. 2b) and
    LXMERT's cross-modality encoder (Tan & Bansal, EMNLP 2019), generalised to M >= 2 modalities: each
    modality's tokens are projected to ``hidden`` (plus a learned modality embedding), then ``layers``
    :class:`CoAttentionBlock` s let the queries of every modality attend to the keys/values of every other.
    Padding tokens and absent modalities are excluded from the keys, and their features are zeroed before
    the projection, so they cannot change the output. The pooled vector is the mean over the valid tokens
    of the present modalities (or, with ``pool="modality"``, the mean of per-modality means); a sample
    with none pools to zeros and fuses to the output bias.

    Shapes: ``features[m]`` (B, N_m, D_m) or (B, D_m) (one token), ``token_masks[m]`` (B, N_m) bool
    (True = real token), ``mask[m]`` (B,) bool -> (B, dim).

    Args:
        input_dims: modality name -> token feature size ``D_m`` (at least two modalities).
        dim: fused size.
        heads: attention heads; must divide ``hidden``.
        hidden: attention width (default ``dim``).
        layers: number of co-attention blocks.
        dropout: dropout in attention and residual branches.
        ffn_mult: the feed-forward width is ``ffn_mult * hidden``.
        pool: ``tokens`` (mean over every valid token, so longer sequences weigh more), ``modality``
            (mean per modality, then mean over the modalities with a valid token) or ``joint`` (the
            per-modality means concatenated with their elementwise product, the multiplicative
            interaction of bilinear VQA fusions such as MLB, Kim et al., ICLR 2017; an absent modality's
            mean is zero, and so is the product).
    """

    uses_tokens = True
    min_modalities = 2

    def __init__(
        self,
        input_dims: Mapping[str, int],
        dim: int,
        *,
        heads: int = 4,
        hidden: int | None = None,
        layers: int = 1,
        dropout: float = 0.0,
        ffn_mult: int = 2,
        pool: str = "tokens",
    ) -> None:
        super().__init__(input_dims, dim)
        width = check_positive_int("hidden", dim if hidden is None else hidden)
        check_positive_int("heads", heads)
        if width % heads:
            raise ConfigError(f"heads: {heads} does not divide the attention width hidden={width}")
        check_positive_int("layers", layers)
        check_positive_int("ffn_mult", ffn_mult)
        rate = check_probability("dropout", dropout)
        check_choice("pool", pool, ["tokens", "modality", "joint"])
        self.pool = pool
        self.width = width
        self.token_projections = nn.ModuleDict(
            {name: nn.Linear(size, width) for name, size in self.input_dims.items()}
        )
        self.modality_embeddings = nn.Parameter(torch.randn(len(self.modalities), width) * 0.02)
        self.blocks = nn.ModuleList(
            [CoAttentionBlock(self.modalities, width, heads, rate, ffn_mult) for _ in range(layers)]
        )
        self.output = nn.Linear(width * (len(self.modalities) + 1) if pool == "joint" else width, dim)

    def _streams(
        self,
        features: Mapping[str, Tensor],
        present: Tensor,
        token_masks: Mapping[str, Tensor] | None,
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Project each modality's valid tokens; return tokens (B, N_m, width) and validity (B, N_m)."""
        if token_masks is not None:
            unknown = [name for name in token_masks if name not in self.input_dims]
            if unknown:
                raise ValueError(
                    f"unknown modality {unknown[0]!r} in token_masks; this fusion was built for: "
                    f"{', '.join(self.modalities)}"
                )
        template = next(features[name] for name in self.modalities if name in features)
        batch = present.shape[0]
        tokens, valid = {}, {}
        for index, name in enumerate(self.modalities):
            size = self.input_dims[name]
            values = features.get(name, template.new_zeros(batch, 1, size))
            if values.dim() == 2:
                values = values.unsqueeze(1)
            if values.dim() != 3 or values.shape[2] != size:
                raise ValueError(
                    f"features[{name!r}] must have shape (B, N, {size}) or (B, {size}), got {tuple(values.shape)}"
                )
            real = torch.ones(values.shape[:2], dtype=torch.bool, device=values.device)
            if token_masks is not None and name in token_masks:
                given = token_masks[name]
                if given.shape != values.shape[:2]:
                    raise ValueError(
                        f"token_masks[{name!r}] must have shape {tuple(values.shape[:2])}, got {tuple(given.shape)}"
                    )
                real = given.to(device=values.device, dtype=torch.bool)
            usable = real & present[:, index : index + 1]
            clean = torch.where(
                usable.unsqueeze(-1), values, torch.zeros((), dtype=values.dtype, device=values.device)
            )
            tokens[name] = self.token_projections[name](clean) + self.modality_embeddings[index]
            valid[name] = usable
        return tokens, valid

    def forward(
        self,
        features: Mapping[str, Tensor],
        mask: Mapping[str, Tensor] | None = None,
        *,
        token_masks: Mapping[str, Tensor] | None = None,
    ) -> Tensor:
        """Return the fused ``(B, dim)`` vector."""
        present = self.presence(features, mask)
        tokens, valid = self._streams(features, present, token_masks)
        for block in self.blocks:
            tokens = block(tokens, valid)
        if self.pool == "tokens":
            pooled = masked_mean(
                torch.cat([tokens[name] for name in self.modalities], dim=1),
                torch.cat([valid[name] for name in self.modalities], dim=1),
            )
        elif self.pool == "joint":
            means = [masked_mean(tokens[name], valid[name]) for name in self.modalities]
            pooled = torch.cat([*means, torch.stack(means, 0).prod(0)], dim=-1)
        else:
            per_modality = torch.stack(
                [masked_mean(tokens[name], valid[name]) for name in self.modalities], 1
            )
            has_tokens = torch.stack([valid[name].any(dim=1) for name in self.modalities], dim=1)
            pooled = masked_mean(per_modality, has_tokens)
        return self.output(pooled)


def masked_mean(values: Tensor, valid: Tensor) -> Tensor:
    """Mean of ``values`` (B, N, D) over the positions where ``valid`` (B, N) is True; zeros if none."""
    kept = torch.where(valid.unsqueeze(-1), values, torch.zeros((), dtype=values.dtype, device=values.device))
    return kept.sum(dim=1) / valid.sum(dim=1, keepdim=True).clamp(min=1).to(values.dtype)
