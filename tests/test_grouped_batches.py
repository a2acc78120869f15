"""Batches grouped by shared image (``train.group_by: image``) and encoding a shared image once per batch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medfuse.core.config import from_dict
from medfuse.core.errors import ConfigError
from medfuse.data import ManifestDataset
from medfuse.models import build_model
from medfuse.models.config import ModelConfig
from medfuse.train.distributed import EpochSampler
from medfuse.train.loop import _groups


def _order(sampler: EpochSampler, epoch: int, skip: int = 0) -> list[int]:
    sampler.set_epoch(epoch, skip=skip)
    return list(sampler)


def _runs(order: list[int], groups: list[int]) -> int:
    """Return how many contiguous runs of equal group keys ``order`` has."""
    keys = [groups[i] for i in order]
    return 1 + sum(a != b for a, b in zip(keys, keys[1:], strict=False))


GROUPS = [i % 7 for i in range(40)]  # 7 images, 5-6 questions each, interleaved in the manifest


def test_grouped_order_is_a_permutation_with_contiguous_groups() -> None:
    sampler = EpochSampler(len(GROUPS), shuffle=True, seed=3, groups=GROUPS)
    first, second = _order(sampler, 0), _order(sampler, 1)
    for order in (first, second):
        assert sorted(order) == list(range(len(GROUPS)))
        assert _runs(order, GROUPS) == 7  # each image's samples form one run
    assert first != second  # groups and members reshuffle per epoch
    assert first == _order(EpochSampler(len(GROUPS), shuffle=True, seed=3, groups=GROUPS), 0)
    assert _order(sampler, 0, skip=9) == first[9:]  # resume skips exactly the consumed samples


def test_grouped_order_without_shuffle_keeps_first_seen_group_order() -> None:
    order = _order(EpochSampler(len(GROUPS), shuffle=False, seed=0, groups=GROUPS), 0)
    assert order[:6] == [0, 7, 14, 21, 28, 35] and _runs(order, GROUPS) == 7


def test_grouped_shards_are_disjoint_and_contiguous() -> None:
    shards = [_order(EpochSampler(len(GROUPS), shuffle=True, seed=1, rank=r, world_size=2, groups=GROUPS), 0)
              for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 20
    assert set(shards[0]).isdisjoint(shards[1])
    assert _runs(shards[0], GROUPS) + _runs(shards[1], GROUPS) <= 8  # at most one group split by the cut


def test_groups_must_match_the_samples() -> None:
    with pytest.raises(ValueError, match="one key per sample"):
        EpochSampler(5, shuffle=True, seed=0, groups=[0, 1])


@pytest.fixture
def vqa_manifest(tmp_path: Path) -> Path:
    """Three images, two or three questions each, rows interleaved."""
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (24, 24), dtype=np.uint8)).save(tmp_path / f"img{i}.png")
    rows = []
    for q in range(8):
        i = q % 3
        rows.append({"image_path": f"img{i}.png", "question": f"question {q}?", "answer": ["yes", "no"][q % 2],
                     "answer_type": "CLOSED", "q_lang": "en", "split": "train", "img_id": i, "modality": "CT"})
    path = tmp_path / "vqa.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_dataset_keys_samples_by_image_file(vqa_manifest: Path) -> None:
    ds = ManifestDataset(vqa_manifest, {"preset": "slake", "label": "answer", "image_size": 16}, split="train")
    keys = ds.group_keys("image")
    assert keys == [0, 1, 2, 0, 1, 2, 0, 1]
    batch = ds.collate_fn([ds[i] for i in range(8)])
    assert batch["image_key"].tolist() == keys
    assert torch.equal(batch["image"][0], batch["image"][3])  # same file, same pixels (no augmentation)
    assert _groups(ds, "image") == keys and _groups(ds, None) is None
    with pytest.raises(ConfigError, match="group_by: 'audio'"):
        ds.group_keys("audio")
    with pytest.raises(ConfigError, match="cannot group"):
        _groups(torch.utils.data.TensorDataset(torch.zeros(2)), "image")


def _vqa_model() -> torch.nn.Module:
    cfg = from_dict(ModelConfig, {
        "kind": "diagnosis",
        "encoders": {
            "image": {"type": "timm", "params": {"arch": "test_efficientnet", "in_chans": 1, "output_tokens": True}},
            "question": {"type": "transformer_text", "modality": "question",
                         "params": {"width": 32, "layers": 1, "heads": 2, "max_length": 16}},
        },
        "fusion": {"type": "cross_attention", "dim": 32, "params": {"heads": 2, "layers": 1, "pool": "modality"}},
        "head": {"type": "multiclass", "num_outputs": 2},
    }, where="model")
    torch.manual_seed(0)
    return build_model(cfg).eval()


def test_shared_images_are_encoded_once_with_the_same_result(vqa_manifest: Path) -> None:
    ds = ManifestDataset(vqa_manifest, {"preset": "slake", "label": "answer", "image_size": 16, "channels": 1},
                         split="train")
    batch = ds.collate_fn([ds[i] for i in range(8)])
    model = _vqa_model()
    seen: list[int] = []
    model.encoders["image"].register_forward_pre_hook(lambda _m, args: seen.append(int(args[0].shape[0])))
    with torch.no_grad():
        shared = model(batch)
        separate = model({k: v for k, v in batch.items() if k != "image_key"})
    assert seen == [3, 8]  # three distinct files, then every sample
    torch.testing.assert_close(shared.logits, separate.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(shared.features["image"], separate.features["image"], atol=1e-5, rtol=1e-5)


def _batch_and_model(vqa_manifest: Path) -> tuple[dict, torch.nn.Module]:
    ds = ManifestDataset(vqa_manifest, {"preset": "slake", "label": "answer", "image_size": 16, "channels": 1},
                         split="train")
    return ds.collate_fn([ds[i] for i in range(8)]), _vqa_model()


def _image_features(model: torch.nn.Module, batch: dict) -> torch.Tensor:
    with torch.no_grad():
        return model(batch).features["image"]


def test_absent_or_edited_rows_are_encoded_on_their_own(vqa_manifest: Path) -> None:
    batch, model = _batch_and_model(vqa_manifest)
    no_keys = {k: v for k, v in batch.items() if k != "image_key"}
    # row 0 (first of file 0) absent: rows 3 and 6 of the same file must keep their own image features
    absent = {**batch, "present": {**batch["present"], "image": torch.tensor([False] + [True] * 7)}}
    torch.testing.assert_close(_image_features(model, absent),
                               _image_features(model, {**no_keys, "present": absent["present"]}), atol=1e-5, rtol=1e-5)
    assert _image_features(model, absent)[3].abs().sum() > 0
    # row 3 corrupted (pixels differ from its file's first row): encoded from its own pixels
    edited = batch["image"].clone()
    edited[3] = edited[3].flip(-1) + 0.5
    torch.testing.assert_close(_image_features(model, {**batch, "image": edited}),
                               _image_features(model, {**no_keys, "image": edited}), atol=1e-5, rtol=1e-5)


def test_grad_cam_keeps_one_map_per_sample(vqa_manifest: Path) -> None:
    from medfuse.evaluate.explain import grad_cam

    batch, model = _batch_and_model(vqa_manifest)
    maps = grad_cam(model, batch)
    assert maps.maps.shape[0] == 8


def test_samples_without_a_file_are_their_own_groups() -> None:
    class Keys(torch.utils.data.Dataset):
        def group_keys(self, kind: str) -> list[int]:
            return [0, -1, 1, -1, 0, -1]

    groups = _groups(Keys(), "image")
    assert groups is not None and groups[0] == groups[4] and len(set(groups)) == 5
    assert min(groups) >= 0


def test_a_files_samples_share_their_augmentation_within_an_epoch(vqa_manifest: Path) -> None:
    from medfuse.train.loop import SeededSamples

    ds = ManifestDataset(vqa_manifest, {"preset": "slake", "label": "answer", "image_size": 16}, split="train",
                         train=True)
    grouped = SeededSamples(ds, seed=0, groups=_groups(ds, "image"))
    assert torch.equal(grouped[0]["image"], grouped[3]["image"])  # same file, same view
    plain = SeededSamples(ds, seed=0)
    assert not torch.equal(plain[0]["image"], plain[3]["image"])  # without groups each sample draws its own
    grouped.epoch = 1
    assert not torch.equal(grouped[0]["image"], SeededSamples(ds, seed=0, groups=_groups(ds, "image"))[0]["image"])


def test_group_by_names_an_input_kind() -> None:
    from medfuse.train.config import LoopConfig

    with pytest.raises(ConfigError, match="train.group_by"):
        LoopConfig(group_by="images")
