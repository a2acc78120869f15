"""ManifestDataset, collate (batch contract), transforms, cache and reproducible loaders."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medfuse.data import (
    Augment,
    Collate,
    DataConfig,
    ImagePipeline,
    ManifestDataset,
    build_loader,
    collate,
    finish_images,
    prepare_image,
    validate_manifest,
)
from medfuse.data.transforms import affine_grid, random_affine

SIZE = 32
CONFIG = DataConfig(
    image="image_path", text=["history", "findings"], labels=["effusion", "nodule"], vitals=["hr", "spo2"],
    patient="patient_id", split="split", subgroups=["sex", "age"], image_size=SIZE, channels=3,
)


def _write_manifest(root: Path, n: int = 12, corrupt: int | None = None) -> Path:
    (root / "img").mkdir(exist_ok=True)
    rows = []
    for i in range(n):
        name = f"img/{i:02d}.png"
        if i == corrupt:
            (root / name).write_bytes(b"not a png at all")
        else:
            values = ((np.arange(24 * 20).reshape(24, 20) * (i + 1)) % 256).astype(np.uint8)
            mode = "L" if i % 2 else "RGB"
            image = Image.fromarray(values, "L") if mode == "L" else Image.fromarray(np.stack([values] * 3, -1), "RGB")
            image.save(root / name)
        rows.append([name, f"P{i // 2}", "train" if i < n - 4 else "dev", f"history {i}", f"findings {i}" if i % 3 else "",
                     "1" if i % 2 else "0", "1" if i % 4 == 0 else "0", "" if i == 1 else str(60 + i), str(95 + i % 3),
                     "F" if i % 2 else "M", str(10 * i)])
    path = root / "manifest.csv"
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image_path", "patient_id", "split", "history", "findings", "effusion", "nodule", "hr", "spo2", "sex", "age"])
        writer.writerows(rows)
    return path


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    return _write_manifest(tmp_path)


def test_samples_and_batch_follow_the_contract(manifest):
    ds = ManifestDataset(manifest, CONFIG, split="train")
    assert len(ds) == 8 and ds.task == "multilabel" and ds.label_names == ["effusion", "nodule"]
    sample = ds[1]
    assert sample["image"].shape == (3, SIZE, SIZE) and sample["image"].dtype == torch.float32
    assert sample["text"] == "history 1\n\nfindings 1"
    assert ds[0]["text"] == "history 0"  # empty parts are skipped
    assert torch.isnan(sample["vitals"][0]) and sample["vitals"][1] == 96
    assert sample["subgroups"] == {"sex": "F", "age": "<18"} and ds[4]["subgroups"]["age"] == "40-64"
    batch = build_loader(ds, batch_size=4).__iter__().__next__()
    assert batch["image"].shape == (4, 3, SIZE, SIZE) and batch["image"].dtype == torch.float32
    assert batch["index"].tolist() == [0, 1, 2, 3] and batch["index"].dtype == torch.int64
    assert batch["line"].tolist() == [2, 3, 4, 5]
    assert batch["labels"].shape == (4, 2) and batch["labels"].dtype == torch.float32
    assert batch["labels"].tolist() == [[0, 1], [1, 0], [0, 0], [1, 0]]
    assert batch["vitals"].shape == (4, 2) and torch.isnan(batch["vitals"][1, 0]) and not torch.isnan(batch["vitals"][0]).any()
    assert batch["present"]["image"].dtype == torch.bool and batch["present"]["image"].all()
    assert batch["present"]["vitals"].all() and batch["patient_id"] == ["P0", "P0", "P1", "P1"]
    assert len(batch["text"]) == 4 and batch["subgroups"]["sex"] == ["M", "F", "M", "F"]
    assert ds.label_matrix().shape == (8, 2)


def test_images_are_normalised_per_channel(tmp_path):
    Image.fromarray(np.full((8, 8), 51, np.uint8), "L").save(tmp_path / "g.png")
    (tmp_path / "m.csv").write_text("image_path,label\ng.png,a\ng.png,b\n")
    cfg = DataConfig(image="image_path", label="label", image_size=SIZE, split=None, mean=[0.1, 0.2, 0.3], std=[0.5, 0.5, 0.25])
    image = ManifestDataset(tmp_path / "m.csv", cfg)[0]["image"]
    expected = torch.tensor([(0.2 - 0.1) / 0.5, (0.2 - 0.2) / 0.5, (0.2 - 0.3) / 0.25])
    assert torch.allclose(image.mean(dim=(1, 2)), expected, atol=1e-5)
    assert torch.allclose(image.std(dim=(1, 2)), torch.zeros(3), atol=1e-5)


def test_classes_split_alias_and_validated_source(manifest):
    cfg = DataConfig(image="image_path", label="sex", patient="patient_id", subgroups=["age"], image_size=SIZE)
    report = validate_manifest(manifest, cfg)
    ds = ManifestDataset(report, split="val")  # 'val' finds 'dev'
    assert ds.split == "dev" and len(ds) == 4 and ds.classes == ["F", "M"] and ds.task == "binary"
    batch = collate([ds[i] for i in range(4)])
    assert batch["labels"].dtype == torch.int64 and batch["labels"].tolist() == [1, 0, 1, 0]
    assert ds.label_matrix().tolist() == [[0, 1], [1, 0], [0, 1], [1, 0]]
    assert ds.preprocessing()["classes"] == ["F", "M"] and ds.preprocessing()["image_size"] == SIZE


def test_a_failing_sample_is_dropped_counted_and_logged_once(tmp_path, caplog):
    path = _write_manifest(tmp_path, corrupt=3)
    ds = ManifestDataset(path, CONFIG, split="train")
    loader = build_loader(ds, batch_size=4)
    with caplog.at_level(logging.WARNING, logger="medfuse.data.dataset"):
        for _ in range(2):  # two epochs
            seen = [i for batch in loader for i in batch["index"].tolist()]
            assert seen == [0, 1, 2, 4, 5, 6, 7]
    assert ds.n_failed == 1 and ds.failed_indices == [3]
    messages = [r.getMessage() for r in caplog.records if "skipping" in r.getMessage()]
    assert len(messages) == 1 and "manifest.csv:5" in messages[0]
    assert collate([ds[3]])["index"].numel() == 0  # a batch of only failed samples is empty


def test_failures_are_counted_across_workers(tmp_path):
    path = _write_manifest(tmp_path, corrupt=3)
    ds = ManifestDataset(path, CONFIG, split="train")
    seen = [i for batch in build_loader(ds, batch_size=2, num_workers=2) for i in batch["index"].tolist()]
    assert sorted(seen) == [0, 1, 2, 4, 5, 6, 7] and ds.n_failed == 1


def test_missing_optional_image(tmp_path):
    path = _write_manifest(tmp_path, n=4)
    text = path.read_text().replace("img/01.png", "")
    path.write_text(text)
    ds = ManifestDataset(path, CONFIG)
    batch = collate([ds[0], ds[1]])
    assert batch["present"]["image"].tolist() == [True, False]
    assert torch.count_nonzero(batch["image"][1]) == 0
    uint8 = ManifestDataset(path, CONFIG, batch_transforms=True)
    batch = uint8.collate_fn([uint8[0], uint8[1]])
    assert torch.count_nonzero(batch["image"][1]) == 0 and batch["image"].dtype == torch.float32


def test_cache_skips_decoding_and_matches(tmp_path, monkeypatch):
    path = _write_manifest(tmp_path)
    import medfuse.data.images as images

    calls = []
    original = images.load_image
    monkeypatch.setattr(images, "load_image", lambda *a, **k: calls.append(a[0]) or original(*a, **k))
    plain = ManifestDataset(path, CONFIG)
    reference = torch.stack([plain[i]["image"] for i in range(len(plain))])
    assert len(calls) == 12
    cached = ManifestDataset(path, CONFIG, cache_dir=tmp_path / "cache")
    first = torch.stack([cached[i]["image"] for i in range(len(cached))])
    assert len(calls) == 24 and cached.cache.n_ready == 12
    again = ManifestDataset(path, CONFIG, cache_dir=tmp_path / "cache")  # a new run, same cache
    second = torch.stack([again[i]["image"] for i in range(len(again))])
    assert len(calls) == 24  # nothing decoded
    assert torch.equal(first, reference) and torch.equal(second, reference)
    other = ManifestDataset(path, DataConfig(**{**CONFIG.__dict__, "image_size": 16}), cache_dir=tmp_path / "cache")
    assert other.cache.key != again.cache.key and other[0]["image"].shape == (3, 16, 16)


def test_cache_is_filled_by_loader_workers(tmp_path):
    path = _write_manifest(tmp_path)
    ds = ManifestDataset(path, CONFIG, cache_dir=tmp_path / "cache", batch_transforms=True)
    assert ds.cache.n_ready == 0
    first = torch.cat([b["image"] for b in build_loader(ds, batch_size=5, num_workers=2)])
    assert ds.cache.n_ready == 12  # written by the workers, seen here through the shared file
    second = torch.cat([b["image"] for b in build_loader(ds, batch_size=5)])
    assert torch.equal(first, second)


def test_prepare_image_crop_and_squash():
    image = np.zeros((20, 40), np.float32)
    image[:, 32:] = 1.0  # bright band on the right edge
    crop = prepare_image(image, 10, channels=1, resize="crop")
    squash = prepare_image(image, 10, channels=3, resize="squash")
    assert crop.shape == (1, 10, 10) and crop.dtype == np.uint8 and crop.max() == 0  # the band is cropped away
    assert squash.shape == (3, 10, 10) and squash[:, :, -1].min() == 255 and squash[:, :, 0].max() == 0


def _asymmetric(size: int = SIZE) -> torch.Tensor:
    image = torch.zeros(3, size, size, dtype=torch.uint8)
    image[:, :, : size // 2] = 200
    return image


def test_augmentation_keeps_laterality_unless_flips_are_enabled():
    assert Augment().hflip is False
    g = torch.Generator().manual_seed(0)
    pipe = ImagePipeline([0.0] * 3, [1.0] * 3, Augment())
    for _ in range(20):
        out = pipe(_asymmetric(), g)
        assert out[:, :, : SIZE // 2].mean() > out[:, :, SIZE // 2 :].mean()
    flips = ImagePipeline([0.0] * 3, [1.0] * 3, Augment(hflip=True))
    flipped = [bool(flips(_asymmetric(), g)[:, :, SIZE // 2 :].mean() > 0.5) for _ in range(40)]
    assert 5 < sum(flipped) < 35


def test_augmentation_is_mild_deterministic_and_identity_at_zero():
    image = _asymmetric()
    still = ImagePipeline([0.0] * 3, [1.0] * 3, Augment(scale=(1, 1), ratio=(1, 1), degrees=0, brightness=0, contrast=0))
    plain = ImagePipeline([0.0] * 3, [1.0] * 3)
    assert torch.allclose(still(image), plain(image), atol=1e-6)
    theta = random_affine(500, Augment(), torch.Generator().manual_seed(1))
    angle = torch.rad2deg(torch.atan2(theta[:, 1, 0] / theta[:, 1, 1].sign(), theta[:, 1, 1].abs()))
    area = (theta[:, 0, 0] ** 2 + theta[:, 0, 1] ** 2).sqrt() * (theta[:, 1, 0] ** 2 + theta[:, 1, 1] ** 2).sqrt()
    assert angle.abs().max() <= 7.0001 and angle.abs().max() > 5
    assert area.min() >= 0.85 - 1e-4 and area.max() <= 1.0 + 1e-6
    grid = affine_grid(theta[:3], 9, 7)
    assert torch.allclose(grid, torch.nn.functional.affine_grid(theta[:3], [3, 1, 9, 7], align_corners=False), atol=1e-6)
    pipe = ImagePipeline([0.0] * 3, [1.0] * 3, Augment())
    a = pipe(image, torch.Generator().manual_seed(5))
    b = pipe(image, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and not torch.equal(a, plain(image))


def test_batch_transforms_match_per_sample_eval(manifest):
    per_sample = ManifestDataset(manifest, CONFIG)
    batched = ManifestDataset(manifest, CONFIG, batch_transforms=True)
    assert batched[0]["image"].dtype == torch.uint8
    a = per_sample.collate_fn([per_sample[i] for i in range(4)])["image"]
    b = batched.collate_fn([batched[i] for i in range(4)])["image"]
    assert torch.allclose(a, b, atol=1e-6)
    deferred = ManifestDataset(manifest, CONFIG, batch_transforms="device")
    raw = deferred.collate_fn([deferred[i] for i in range(4)])
    assert raw["image"].dtype == torch.uint8
    assert torch.allclose(finish_images(raw, deferred.pipeline)["image"], a, atol=1e-6)
    train = ManifestDataset(manifest, CONFIG, batch_transforms=True, train=True)
    out = Collate(train.pipeline, torch.Generator().manual_seed(0))([train[i] for i in range(4)])["image"]
    assert out.shape == a.shape and not torch.allclose(out, a)


def test_loader_is_reproducible(manifest):
    ds = ManifestDataset(manifest, CONFIG, train=True)

    def run(seed: int, workers: int) -> tuple[list[int], torch.Tensor]:
        if workers == 0:
            torch.manual_seed(seed)  # the entry point seeds the global generator for in-process augmentation
        batches = list(build_loader(ds, batch_size=4, shuffle=True, num_workers=workers, seed=seed))
        return [i for b in batches for i in b["index"].tolist()], torch.cat([b["image"] for b in batches])

    order_a, images_a = run(3, 2)
    order_b, images_b = run(3, 2)
    assert order_a == order_b and torch.equal(images_a, images_b)
    order_c, _ = run(4, 2)
    assert order_c != order_a and sorted(order_c) == list(range(12))
    order_d, images_d = run(3, 0)
    order_e, images_e = run(3, 0)
    assert order_d == order_a and torch.equal(images_d, images_e)


def test_text_is_cut_to_max_text_chars(manifest):
    ds = ManifestDataset(manifest, DataConfig(**{**CONFIG.__dict__, "max_text_chars": 12}))
    assert ds[1]["text"] == "history 1\n\nf"


def test_text_can_be_deidentified_on_the_fly(tmp_path):
    pytest.importorskip("medfuse.text.deid")
    (tmp_path / "m.csv").write_text('report,patient_id\n"Seen by Dr. Alice Moreau on 03/14/2021.",P1\n')
    plain = ManifestDataset(tmp_path / "m.csv", DataConfig(text="report", patient="patient_id", split=None))
    assert "Moreau" in plain[0]["text"]
    for deid in (True, {"enabled": True, "mode": "placeholder"}):
        ds = ManifestDataset(tmp_path / "m.csv", DataConfig(text="report", patient="patient_id", split=None, deid=deid))
        assert ds[0]["text"] == "Seen by Dr. [NAME] on [DATE]."
    off = ManifestDataset(tmp_path / "m.csv", DataConfig(text="report", split=None, deid={"enabled": False}))
    assert "Moreau" in off[0]["text"]


def test_signals_are_read_cut_and_padded(tmp_path):
    from scipy.io import savemat

    for name, length in (("r1", 30), ("r2", 12)):
        samples = (np.arange(2 * length, dtype=np.int16).reshape(2, length) % 7) * 100
        savemat(tmp_path / f"{name}.mat", {"val": samples}, format="4")
        (tmp_path / f"{name}.hea").write_text(
            f"{name} 2 500 {length}\n{name}.mat 16 100/mV 16 0\n{name}.mat 16 100/mV 16 0\n")
    (tmp_path / "m.csv").write_text("record_path,dx\nr1,a;b\nr2,b\n,a\n")
    cfg = DataConfig(signal="record_path", label="dx", label_sep=";", split=None, optional=["signal"])
    ds = ManifestDataset(tmp_path / "m.csv", cfg)
    assert ds[0]["signal"].shape == (2, 30) and ds[0]["signal"][0, 2].item() == pytest.approx(2.0)  # (200 - 0) / 100
    batch = collate([ds[0], ds[1], ds[2]])
    assert batch["signal"].shape == (3, 2, 30) and batch["present"]["signal"].tolist() == [True, True, False]
    assert torch.count_nonzero(batch["signal"][1, :, 12:]) == 0 and batch["labels"].tolist() == [[1, 1], [0, 1], [1, 0]]
    fixed = ManifestDataset(tmp_path / "m.csv", DataConfig(**{**cfg.__dict__, "signal_length": 16}))
    assert collate([fixed[0], fixed[1], fixed[2]])["signal"].shape == (3, 2, 16)


def test_video_clips(tmp_path):
    pytest.importorskip("av")
    from medfuse.data.video import write_video

    frames = np.linspace(0, 1, 6 * 16 * 16).reshape(6, 16, 16).astype(np.float32)
    write_video(tmp_path / "clip.avi", frames)
    (tmp_path / "m.csv").write_text("video_path,label\nclip.avi,a\nclip.avi,b\n")
    cfg = DataConfig(video="video_path", label="label", split=None, video_frames=4, image_size=8, channels=1)
    ds = ManifestDataset(tmp_path / "m.csv", cfg)
    batch = collate([ds[0], ds[1]])
    assert batch["video"].shape == (2, 4, 1, 8, 8) and torch.isfinite(batch["video"]).all()
    assert batch["present"]["video"].all() and ds.n_failed == 0


def test_synthetic_set_end_to_end(tmp_path):
    synth = pytest.importorskip("medfuse.data.synth")
    result = synth.generate_synthetic(tmp_path, n=24, seed=0, image_size=32)
    report = validate_manifest(result.manifest_path)  # the 'synthetic' preset is detected
    assert report.config.labels == list(synth.LABELS) and report.read == report.kept == 24
    ds = ManifestDataset(report, {"preset": "synthetic", "image_size": SIZE}, split="train", train=True)
    batch = next(iter(build_loader(ds, batch_size=4, shuffle=True, seed=0)))
    assert batch["image"].shape == (4, 3, SIZE, SIZE) and batch["labels"].shape == (4, 5)
    assert batch["vitals"].shape == (4, 6) and set(batch["present"]) == {"image", "text", "vitals"}
    assert set(batch["subgroups"]) == {"sex", "age", "view"} and ds.label_names == list(synth.LABELS)
