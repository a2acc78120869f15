"""CLIP-style dual encoder, and parity of imported Hugging Face / open_clip CLIP models with their sources."""

from __future__ import annotations

import math
import os
import shutil

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from medfuse.core.errors import ConfigError
from medfuse.models import DualEncoder, DualEncoderOutput, build_model, load_checkpoint, save_checkpoint
from medfuse.models.encoders import TimmImageEncoder, TransformerTextEncoder


def _towers() -> tuple[TimmImageEncoder, TransformerTextEncoder]:
    torch.manual_seed(0)
    image = TimmImageEncoder("test_resnet", output_tokens=False)
    text = TransformerTextEncoder(width=32, layers=1, heads=2, max_length=32)
    return image, text


def test_dual_encoder_embeds_are_normalised_and_scaled() -> None:
    image, text = _towers()
    model = DualEncoder(image, text, embed_dim=16)
    out = model({"image": torch.randn(3, 3, 32, 32), "text": ["effusion", "no finding", "cardiomegaly"]})
    assert isinstance(out, DualEncoderOutput)
    assert out.image_embeds.shape == (3, 16) and out.text_embeds.shape == (3, 16)
    assert torch.allclose(out.image_embeds.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert torch.allclose(out.text_embeds.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert out.logit_scale.item() == pytest.approx(1 / 0.07, rel=1e-5) and out.logit_bias is None
    assert out.text_output is not None and out.text_output.tokens.shape[0] == 3
    raw = model.encode_text(["effusion"], normalize=False)
    assert not torch.allclose(raw.norm(dim=-1), torch.ones(1))
    # gradients reach both towers and the temperature through a CLIP-style loss
    logits = out.logit_scale * out.image_embeds @ out.text_embeds.T
    labels = torch.arange(3)
    (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)).backward()
    assert model.logit_scale.grad is not None and model.logit_scale.grad.abs() > 0
    assert image.model.conv1[0].weight.grad.abs().sum() > 0
    assert text.token_embedding.weight.grad.abs().sum() > 0


def test_siglip_bias_mlp_projection_and_prefix() -> None:
    image, text = _towers()
    model = DualEncoder(image, text, 8, projection="mlp", init_logit_scale=math.log(10), init_logit_bias=-10.0)
    out = model({"image": torch.randn(2, 3, 32, 32), "text": ["a", "b"]})
    assert out.logit_bias.item() == -10.0 and out.logit_scale.item() == pytest.approx(10.0)
    assert isinstance(model.image_projection, torch.nn.Sequential)
    sims = model.similarity(torch.randn(2, 3, 32, 32), ["a", "b", "c"])
    assert sims.shape == (2, 3) and (sims <= 1e-4).all()  # 10 * cos - 10 <= 0
    prefix = torch.nn.Parameter(torch.zeros(4, 32))
    model.encode_text(["a"], prefix=prefix).pow(2).sum().backward()
    assert prefix.grad.abs().sum() > 0


def test_dual_encoder_errors() -> None:
    image, text = _towers()
    with pytest.raises(ConfigError, match="projection: 'none' needs the tower size 96"):
        DualEncoder(image, text, 16, projection="none")
    with pytest.raises(ConfigError, match="did you mean 'linear'"):
        DualEncoder(image, text, 16, projection="lineer")
    with pytest.raises(KeyError, match="'text'"):
        DualEncoder(image, text, 16)({"image": torch.randn(1, 3, 32, 32)})


def test_build_dual_encoder_from_config() -> None:
    model = build_model({
        "kind": "dual_encoder",
        "encoders": {
            "image": {"type": "timm", "modality": "xray", "params": {"arch": "test_resnet"}},
            "text": {"type": "transformer_text", "modality": "report", "params": {"width": 16, "layers": 1, "heads": 2}},
        },
        "embed_dim": 8,
        "init_logit_bias": -10,
    })
    assert isinstance(model, DualEncoder) and model.image_key == "xray" and model.logit_bias is not None
    out = model({"xray": torch.randn(2, 3, 32, 32), "report": ["x", "y"]})
    assert out.image_embeds.shape == (2, 8)


def _tiny_hf_clip(directory: Path) -> torch.nn.Module:
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(0)
    text = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                max_position_embeddings=16, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32,
                  patch_size=8)
    clip = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=24)).eval()
    clip.save_pretrained(str(directory))
    return clip


def test_hf_clip_import_equals_get_features_and_survives_a_checkpoint(tmp_path: Path) -> None:
    from medfuse.models.interop import load_hf_clip

    clip = _tiny_hf_clip(tmp_path / "clip")
    imported = load_hf_clip(tmp_path / "clip")
    model = imported.model
    torch.manual_seed(1)
    images = torch.randn(3, 3, 32, 32)
    ids = torch.randint(3, 64, (3, 12))
    ids[:, 0], ids[:, -1] = 1, 2
    mask = torch.ones_like(ids)
    mask[2, 8:] = 0
    with torch.no_grad():
        ref_image = F.normalize(clip.get_image_features(pixel_values=images).pooler_output, dim=-1)
        ref_text = F.normalize(clip.get_text_features(input_ids=ids, attention_mask=mask).pooler_output, dim=-1)
        ours_image = model.encode_image(images)
        ours_text = model.encode_text({"input_ids": ids, "attention_mask": mask})
    assert torch.allclose(ours_image, ref_image, atol=1e-5)
    assert torch.allclose(ours_text, ref_text, atol=1e-5)
    assert model.logit_scale.item() == pytest.approx(clip.logit_scale.item())
    with pytest.raises(ConfigError, match="tokenizer_dir"):
        model.encode_text(["no tokenizer here"])
    _write_clip_tokenizer(tmp_path / "clip")
    with_tokenizer = load_hf_clip(tmp_path / "clip")
    texts = ["abc de", "a"]
    tokens = with_tokenizer.model.text_encoder.tokenize(texts)
    assert tokens["input_ids"][0].tolist() == [1, 3, 5, 8, 9, 12, 2]  # <s> a b c</w> d e</w> </s>
    with torch.no_grad():
        from_strings = with_tokenizer.model.encode_text(texts)
        ref = F.normalize(clip.get_text_features(**tokens).pooler_output, dim=-1)
    assert torch.allclose(from_strings, ref, atol=1e-5)
    save_checkpoint(tmp_path / "ckpt", with_tokenizer.model, with_tokenizer.config)
    shutil.rmtree(tmp_path / "clip")  # the checkpoint keeps the tokenizer and configs itself
    reloaded = load_checkpoint(tmp_path / "ckpt").model
    with torch.no_grad():
        assert torch.allclose(reloaded.encode_image(images), ref_image, atol=1e-5)
        assert torch.allclose(reloaded.encode_text(texts), ref, atol=1e-5)


def _write_clip_tokenizer(directory: Path) -> None:
    """A tiny CLIP BPE tokenizer (letters only, no merges) saved into ``directory``."""
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 1, "<|endoftext|>": 2, "!": 0}
    for letter in "abcdefghijklmnopqrstuvwxyz":
        vocab[letter] = len(vocab)
        vocab[letter + "</w>"] = len(vocab)
    CLIPTokenizer(vocab=vocab, merges=[], pad_token="!").save_pretrained(str(directory))


def test_open_clip_import_equals_encode_image_and_text(tmp_path: Path) -> None:
    open_clip = pytest.importorskip("open_clip")
    from safetensors.torch import save_file

    from medfuse.models.interop import load_open_clip

    model_cfg = {
        "embed_dim": 24,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
        "text_cfg": {"context_length": 16, "vocab_size": 100, "width": 32, "heads": 2, "layers": 2},
    }
    torch.manual_seed(0)
    reference = open_clip.CLIP(**model_cfg).eval()
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(tmp_path / "oc.safetensors"))
    imported = load_open_clip(tmp_path / "oc.safetensors", model_cfg=model_cfg)
    torch.manual_seed(1)
    images = torch.randn(2, 3, 32, 32)
    ids = torch.randint(1, 99, (2, 16))
    ids[1, 10:] = 0
    with torch.no_grad():
        assert torch.allclose(imported.model.encode_image(images), reference.encode_image(images, normalize=True), atol=1e-5)
        ours = imported.model.encode_text({"input_ids": ids})
        assert torch.allclose(ours, reference.encode_text(ids, normalize=True), atol=1e-5)
        out = imported.model.image_encoder(images)
    assert out.tokens.shape == (2, 16, 32)  # 4 x 4 patches of width 32
    with pytest.raises(ConfigError, match="vocab_size"):
        imported.model.encode_text(["strings need the standard vocabulary"])
    broken = dict(reference.state_dict())
    del broken["visual.proj"]
    with pytest.raises(ConfigError, match=r"missing in the file \(1\): image_encoder.tower.proj"):
        load_open_clip(broken, model_cfg=model_cfg)
