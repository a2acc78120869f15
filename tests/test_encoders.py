"""Encoders on tiny random configs: shapes, masks, missing values, weight files, errors."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path

import numpy as np
import pytest
import torch

from medfuse.core.errors import ConfigError
from medfuse.models.encoders import (
    ByteTokenizer,
    HFTextEncoder,
    SignalCNN1dEncoder,
    SignalTransformerEncoder,
    TimmImageEncoder,
    TransformerTextEncoder,
    VitalsMLPEncoder,
    read_state_dict,
)


def test_timm_cnn_gives_pooled_and_spatial_tokens() -> None:
    torch.manual_seed(0)
    enc = TimmImageEncoder("resnet18").eval()
    out = enc(torch.randn(2, 3, 64, 64))
    assert out.pooled.shape == (2, 512) and out.tokens.shape == (2, 4, 512)  # 64 / 32 = 2 -> 2 x 2 tokens
    assert enc.output_dim == enc.token_dim == 512
    # the pooled vector is the average of the spatial tokens for a global-average-pool CNN
    assert torch.allclose(out.pooled, out.tokens.mean(1), atol=1e-5)
    assert enc.preprocessing["channels"] == 3 and len(enc.preprocessing["mean"]) == 3


def test_timm_vit_img_size_tokens_and_grad_checkpointing() -> None:
    torch.manual_seed(0)
    enc = TimmImageEncoder("vit_tiny_patch16_224", img_size=32, grad_checkpointing=True)
    assert enc.preprocessing["size"] == 32
    out = enc.train()(torch.randn(2, 3, 32, 32))
    assert out.pooled.shape == (2, 192) and out.tokens.shape == (2, 1 + 4, 192)  # class token + 2 x 2 patches
    out.pooled.pow(2).sum().backward()
    assert enc.model.patch_embed.proj.weight.grad.abs().sum() > 0
    assert enc.model.grad_checkpointing is True


def test_timm_greyscale_random_init() -> None:
    enc = TimmImageEncoder("resnet18", in_chans=1, output_tokens=False)
    assert enc.model.conv1.weight.shape[1] == 1
    assert len(enc.preprocessing["mean"]) == 1 and enc.preprocessing["channels"] == 1
    out = enc(torch.randn(2, 1, 32, 32))
    assert out.tokens is None and out.pooled.shape == (2, 512)
    with pytest.raises(ConfigError, match="in_chans"):
        TimmImageEncoder("resnet18", in_chans=4)


def test_timm_loads_local_weights_files_and_adapts_rgb_to_grey(tmp_path: Path) -> None:
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    source = timm.create_model("resnet18", num_classes=10)
    sd = {k: v.contiguous() for k, v in source.state_dict().items()}
    save_file(sd, str(tmp_path / "r18.safetensors"))
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}}, tmp_path / "r18.pth")
    for name in ("r18.safetensors", "r18.pth"):
        enc = TimmImageEncoder("resnet18", weights=str(tmp_path / name), in_chans=1)
        assert torch.allclose(enc.model.conv1.weight, sd["conv1.weight"].sum(1, keepdim=True))
        assert torch.equal(enc.model.layer4[1].conv2.weight, sd["layer4.1.conv2.weight"])
        assert enc.load_report.adapted == ["conv1.weight"]
        assert sorted(enc.load_report.dropped) == ["fc.bias", "fc.weight"]  # no classifier kept
    kept = TimmImageEncoder("resnet18", weights=str(tmp_path / "r18.safetensors"), num_classes=10)
    assert kept.load_report.dropped == [] and torch.equal(kept.model.fc.weight, sd["fc.weight"])


def test_timm_wrong_weights_say_what_differs(tmp_path: Path) -> None:
    import timm
    from safetensors.torch import save_file

    save_file(timm.create_model("resnet10t", num_classes=0).state_dict(), str(tmp_path / "other.safetensors"))
    with pytest.raises(ConfigError) as info:
        TimmImageEncoder("resnet18", weights=str(tmp_path / "other.safetensors"))
    message = str(info.value)
    assert "missing in the file" in message and "unexpected in the file" in message
    with pytest.raises(ConfigError, match="not found"):
        read_state_dict(tmp_path / "absent.pth")


def test_timm_config_errors_name_the_field() -> None:
    with pytest.raises(ConfigError, match="did you mean 'resnet18'"):
        TimmImageEncoder("resnet1")
    with pytest.raises(ConfigError, match="img_size is only for ViT"):
        TimmImageEncoder("resnet18", img_size=32)
    with pytest.raises(ConfigError, match="arch"):
        TimmImageEncoder()


def test_byte_tokenizer_pads_truncates_and_counts() -> None:
    enc, truncated = ByteTokenizer()(["ab", "héllo world"], max_length=6)
    assert truncated == 1
    assert enc["input_ids"][0].tolist() == [1, ord("a") + 3, ord("b") + 3, 2, 0, 0]
    assert enc["input_ids"].shape == (2, 6) and enc["attention_mask"][0].tolist() == [1, 1, 1, 1, 0, 0]
    assert enc["input_ids"][1, -1].item() == ByteTokenizer.eos_id


@pytest.mark.parametrize("pooling", ["mean", "cls", "eos"])
def test_transformer_text_padding_does_not_change_a_text(pooling: str) -> None:
    torch.manual_seed(0)
    enc = TransformerTextEncoder(width=32, layers=2, heads=4, max_length=24, pooling=pooling).eval()
    with torch.no_grad():
        alone = enc(["short"])
        batch = enc(["short", "a considerably longer sentence"])
    assert batch.tokens.shape == (2, 24, 32) and batch.token_mask.shape == (2, 24)
    assert torch.allclose(alone.pooled[0], batch.pooled[0], atol=1e-5)
    assert enc.last_truncated == 1  # 30 bytes + 2 specials > 24


def test_transformer_text_prefix_extends_the_mask_and_gets_gradients() -> None:
    torch.manual_seed(0)
    enc = TransformerTextEncoder(width=16, layers=1, heads=2, max_length=16, causal=True, pooling="eos")
    prefix = torch.nn.Parameter(torch.randn(3, 16) * 0.1)
    out = enc(["ab", "abcd"], prefix=prefix)
    assert out.tokens.shape == (2, 6 + 3, 16)
    assert out.token_mask[0].tolist() == [True] * 7 + [False] * 2
    out.pooled.pow(2).sum().backward()
    assert prefix.grad is not None and prefix.grad.abs().sum() > 0
    with pytest.raises(ConfigError, match="tokenizer"):
        TransformerTextEncoder(tokenizer="chars")


def test_vitals_stats_match_numpy_and_missing_values_become_indicators() -> None:
    rng = np.random.default_rng(0)
    data = rng.normal(5.0, 2.0, size=(50, 4)).astype(np.float32)
    data[rng.random((50, 4)) < 0.2] = np.nan
    data[:, 3] = np.nan  # never observed
    enc = VitalsMLPEncoder(4, hidden=(8,), dim=6)
    enc.fit_stats(torch.from_numpy(data))
    np.testing.assert_allclose(enc.mean[:3].numpy(), np.nanmean(data[:, :3], axis=0), rtol=1e-5)
    np.testing.assert_allclose(enc.std[:3].numpy(), np.nanstd(data[:, :3], axis=0, ddof=1), rtol=1e-5)
    assert enc.mean[3] == 0 and enc.std[3] == 1
    prepared = enc.prepare(torch.from_numpy(data[:5]))
    missing = np.isnan(data[:5])
    assert prepared.shape == (5, 8)
    assert torch.equal(prepared[:, 4:], torch.from_numpy(missing.astype(np.float32)))
    assert (prepared[:, :4][torch.from_numpy(missing)] == 0).all()
    out = enc(torch.from_numpy(data))
    assert out.pooled.shape == (50, 6) and torch.isfinite(out.pooled).all() and out.tokens is None
    x = torch.tensor([[1.0, float("nan"), 2.0, 3.0]])
    changed = x.clone()
    changed[0, 1] = float("nan")  # a missing value carries no number: any NaN payload gives the same output
    assert torch.equal(enc(x).pooled, enc(changed).pooled)
    with pytest.raises(ValueError, match=r"\(B, 4\)"):
        enc(torch.zeros(2, 3))


def test_signal_encoders_shapes_and_gradients() -> None:
    torch.manual_seed(0)
    signal = torch.randn(3, 2, 250)
    cnn = SignalCNN1dEncoder(2, widths=(8, 16, 32))
    out = cnn(signal)
    assert out.pooled.shape == (3, 32) and out.tokens.shape == (3, 32, 32)  # 250 -> 125 -> 63 -> 32 steps
    assert torch.allclose(out.pooled, out.tokens.mean(1))
    tfm = SignalTransformerEncoder(2, patch_size=16, dim=16, depth=1, heads=2, pooling="mean")
    out = tfm(signal)
    assert out.pooled.shape == (3, 16) and out.tokens.shape == (3, 16, 16)  # ceil(250 / 16) patches
    out.pooled.pow(2).sum().backward()
    assert tfm.patch_embed.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="max_patches"):
        SignalTransformerEncoder(2, patch_size=4, max_patches=8)(torch.randn(1, 2, 64))
    with pytest.raises(ValueError, match=r"\(B, 2, T\)"):
        cnn(torch.randn(3, 250))


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import BertConfig, BertModel, BertTokenizerFast

    directory = tmp_path_factory.mktemp("tiny_bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"abcdefghijklmnopqrstuvwxyz", "the", "lung", "##s"]
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    BertTokenizerFast(vocab_file=str(directory / "vocab.txt")).save_pretrained(str(directory))
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=32,
    )
    BertModel(config).save_pretrained(str(directory))
    return directory


def test_hf_text_mean_pooling_truncation_and_prefix(tiny_bert_dir: Path) -> None:
    enc = HFTextEncoder(str(tiny_bert_dir), max_length=8).eval()
    with torch.no_grad():
        out = enc(["the lungs", "a b c d e f g h i j"])
    assert enc.last_truncated == 1 and out.tokens.shape[1] == 8
    mask = out.token_mask
    manual = (out.tokens * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    assert torch.allclose(out.pooled, manual, atol=1e-6)
    tokens = enc.tokenize(["the lungs"])
    assert set(tokens) >= {"input_ids", "attention_mask"}
    with torch.no_grad():
        same = enc(tokens).pooled
    assert torch.allclose(same[0], out.pooled[0], atol=1e-6)
    prefix = torch.zeros(2, 16, requires_grad=True)
    out = enc(["the lungs"], prefix=prefix)
    assert out.tokens.shape[1] == tokens["input_ids"].shape[1] + 2 and out.token_mask.all()
    out.pooled.pow(2).sum().backward()
    assert prefix.grad is not None and prefix.grad.abs().sum() > 0
    cls = HFTextEncoder(str(tiny_bert_dir), pooling="cls").eval()
    with torch.no_grad():
        first = cls(["the lungs"])
    assert torch.equal(first.pooled, first.tokens[:, 0])


def test_hf_text_errors(tiny_bert_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no config.json"):
        HFTextEncoder(str(tmp_path))
    with pytest.raises(ConfigError, match="exceeds the model's 32 positions"):
        HFTextEncoder(str(tiny_bert_dir), max_length=64)
    with pytest.raises(ConfigError, match="pooling"):
        HFTextEncoder(str(tiny_bert_dir), pooling="max")


def test_checkpointed_blocks_give_the_same_gradients() -> None:
    torch.manual_seed(0)
    enc = TransformerTextEncoder(width=16, layers=2, heads=2, max_length=16).train()
    signal = SignalTransformerEncoder(1, patch_size=4, dim=16, depth=2, heads=2).train()
    grads = []
    for enable in (False, True):
        enc.set_grad_checkpointing(enable)
        signal.set_grad_checkpointing(enable)
        enc.zero_grad()
        signal.zero_grad()
        loss = enc(["ab", "abcdef"]).pooled.pow(2).sum() + signal(torch.ones(2, 1, 16)).pooled.pow(2).sum()
        loss.backward()
        grads.append((enc.blocks[0].qkv.weight.grad.clone(), signal.blocks[0].qkv.weight.grad.clone()))
    assert torch.allclose(grads[0][0], grads[1][0], atol=1e-6) and grads[0][0].abs().sum() > 0
    assert torch.allclose(grads[0][1], grads[1][1], atol=1e-6) and grads[0][1].abs().sum() > 0
