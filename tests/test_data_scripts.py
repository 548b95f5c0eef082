"""The download scripts: each converter on a tiny fixture in its dataset's raw format, and the fetcher.

Real downloads cannot run in tests. Each test writes a few files in the published format (gzipped
IDX, WAV in a zip, MATLAB v7.3/HDF5, GeoTIFF in a zip, MP4 in a zip), runs the script's command
line on them, and checks what ``cmkd_lab.datasets.load`` returns. The fetcher is tested against a
local HTTP server that honours Range requests.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import http.server
import io
import os
import runpy
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

import cmkd_lab.datasets as datasets
from cmkd_lab.app.cli import main
from cmkd_lab.datasets import avmnist, cache, download, eurosat_ms_sar, formats, nyu_depth_v2, ravdess
from cmkd_lab.datasets.download import ChecksumError, DownloadError, Source, fetch

REPO = Path(__file__).resolve().parents[1]
UNREACHABLE = "http://127.0.0.1:9/"


@pytest.fixture
def root(tmp_path, monkeypatch):
    folder = tmp_path / "data"
    monkeypatch.setenv(cache.ENV_VAR, str(folder))
    return folder


def without_checksums(spec):
    """The spec with no checksum known in advance, as a fixture cannot match the real files."""
    sources = tuple(dataclasses.replace(s, sha256=None, md5=None, size=None) for s in spec.sources)
    return dataclasses.replace(spec, sources=sources)


def convert(spec, raw, root, *options):
    status = download.run(
        without_checksums(spec), ["--data-dir", str(root), "--raw-dir", str(raw), "--quiet", *options]
    )
    assert status == 0
    return datasets.load(spec.name)


def wav_bytes(signal: np.ndarray, sample_rate: int) -> bytes:
    from scipy.io import wavfile

    buffer = io.BytesIO()
    wavfile.write(buffer, sample_rate, (np.clip(signal, -1, 1) * 32767).astype(np.int16))
    return buffer.getvalue()


def tone(frequency: float, sample_rate: int, seconds: float) -> np.ndarray:
    return 0.5 * np.sin(2 * np.pi * frequency * np.arange(int(sample_rate * seconds)) / sample_rate)


def write_zip(path: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


# --- AV-MNIST --------------------------------------------------------------------------------


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def make_avmnist_raw(raw: Path) -> None:
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, per_digit in (("train", 10), ("t10k", 2)):
        labels = np.repeat(np.arange(10), per_digit)
        images = rng.integers(0, 255, (len(labels), 28, 28))
        images[:, 0, 0] = labels  # the label is written into the image: pairing is checkable
        write_idx(raw / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte.gz", labels)
    members = {
        f"free-spoken-digit-dataset-1.0.10/recordings/{digit}_{speaker}_{take}.wav": wav_bytes(
            tone(300 + 250 * digit, 8000, 0.4 + 0.1 * take), 8000
        )
        for digit in range(10)
        for speaker in ("jackson", "nicolas")
        for take in range(2)
    }
    members["free-spoken-digit-dataset-1.0.10/README.md"] = b"fixture"
    write_zip(raw / avmnist.FSDD_ZIP, members)


def test_avmnist_from_idx_and_wav_fixture(tmp_path, root):
    raw = tmp_path / "raw"
    make_avmnist_raw(raw)
    with pytest.raises(cache.DataNotPreparedError, match="python data_scripts/get_avmnist.py"):
        datasets.load("avmnist")
    assert not datasets.list_datasets().set_index("name").loc["avmnist", "available"]

    dataset = convert(avmnist.AVMNIST, raw, root, "--images-per-recording", "3", "--n-mels", "16", "--n-frames", "20")
    assert len(dataset) == 40 * 3 and dataset.n_classes == 10
    assert dataset.shape("image") == (1, 28, 28) and dataset.shape("audio") == (1, 16, 20)
    labels = dataset.labels.numpy()
    assert np.array_equal(np.rint(dataset["image"][:, 0, 0, 0].numpy() * 255), labels)  # image matches label
    # the audio is the recording of the same digit: its strongest mel band rises with the digit's tone
    peak_band = dataset["audio"][:, 0].mean(-1).argmax(-1).numpy()
    per_digit = [np.median(peak_band[labels == d]) for d in range(10)]
    assert all(a < b for a, b in zip(per_digit, per_digit[1:]))
    assert len(np.unique(dataset.groups)) == 40
    for part in dataset.split(0).parts().values():  # a recording never crosses split parts
        assert not set(part.groups) - set(dataset.groups)
    splits = dataset.split(0)
    assert not set(splits.train.groups) & set(splits.test.groups)
    assert len(np.unique(datasets.load("avmnist", group_by="speaker").groups)) == 2
    assert datasets.list_datasets().set_index("name").loc["avmnist", "kind"] == "download"
    # the fixture's checksums were unknown in advance, so they were recorded
    assert set(download.recorded_checksums(raw)) == set(f.filename for f in avmnist.AVMNIST.sources)


def test_a_second_run_reuses_the_conversion(tmp_path, root, capsys):
    raw = tmp_path / "raw"
    make_avmnist_raw(raw)
    convert(avmnist.AVMNIST, raw, root, "--images-per-recording", "1")
    capsys.readouterr()
    convert(avmnist.AVMNIST, raw, root, "--images-per-recording", "1")
    assert "already converted" in capsys.readouterr().out
    assert len(convert(avmnist.AVMNIST, raw, root, "--images-per-recording", "2")) == 80  # new options: redone


def test_recorded_checksum_catches_a_changed_file(tmp_path, root, capsys):
    raw = tmp_path / "raw"
    make_avmnist_raw(raw)
    convert(avmnist.AVMNIST, raw, root, "--images-per-recording", "1")
    write_zip(raw / avmnist.FSDD_ZIP, {"recordings/0_x_0.wav": wav_bytes(tone(300, 8000, 0.2), 8000)})
    spec = without_checksums(avmnist.AVMNIST)
    assert download.run(spec, ["--data-dir", str(root), "--raw-dir", str(raw), "--force"]) == 1
    error = capsys.readouterr().err
    assert "sha256" in error and "Delete it and run the script again" in error and "Traceback" not in error


def test_truncated_idx_is_a_format_error(tmp_path):
    path = tmp_path / "x-idx3-ubyte.gz"
    with gzip.open(path, "wb") as handle:
        handle.write(bytes([0, 0, 8, 3]) + (5).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + b"\0" * 100)
    with pytest.raises(formats.FormatError, match="truncated"):
        formats.read_idx(path)


# --- NYU Depth V2 ----------------------------------------------------------------------------


def make_nyu_raw(raw: Path, n: int = 13, height: int = 24, width: int = 32) -> list[str]:
    import h5py

    raw.mkdir(parents=True)
    scene_types = ["kitchen"] * 6 + ["bedroom"] * 4 + ["office"] * 2 + ["bathroom"]
    scenes = [f"{kind}_{1 + i // 3:04d}" for i, kind in enumerate(scene_types)]
    rows = np.linspace(0, 240, height)[:, None] * np.ones((1, width))  # brighter towards the bottom
    columns = np.ones((height, 1)) * np.linspace(1, 9, width)[None]  # deeper towards the right
    # MATLAB stores H x W x 3 x N column-major, which HDF5 shows as N x 3 x W x H.
    images = np.stack([np.stack([rows, rows / 2, 255 - rows]) for _ in range(n)]).astype(np.uint8).transpose(0, 1, 3, 2)
    depths = np.stack([columns + i for i in range(n)]).astype(np.float32).transpose(0, 2, 1)
    path = raw / nyu_depth_v2.NYU_MAT
    with h5py.File(path, "w", userblock_size=512) as handle:
        handle["images"], handle["depths"] = images, depths
        refs = handle.create_group("#refs#")

        def cell_array(name, strings):
            references = []
            for i, text in enumerate(strings):
                chars = refs.create_dataset(f"{name}{i}", data=np.array([[ord(c)] for c in text], dtype=np.uint16))
                references.append(chars.ref)
            handle.create_dataset(name, data=np.array([references], dtype=h5py.ref_dtype))

        cell_array("sceneTypes", scene_types)
        cell_array("scenes", scenes)
    with open(path, "r+b") as handle:  # MATLAB's header in the HDF5 user block, as in the real file
        handle.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: fixture HDF5 schema 1.00 .".ljust(116))
    return scene_types


def test_nyu_depth_v2_from_matlab_v73_fixture(tmp_path, root):
    raw = tmp_path / "raw"
    scene_types = make_nyu_raw(raw)
    dataset = convert(
        nyu_depth_v2.NYU_DEPTH_V2,
        raw,
        root,
        "--height",
        "12",
        "--width",
        "16",
        "--n-scene-classes",
        "3",
        "--chunk",
        "5",
    )
    assert len(dataset) == 13 and dataset.shape("rgb") == (3, 12, 16) and dataset.shape("depth") == (1, 12, 16)
    assert cache.class_names("nyu_depth_v2") == ["kitchen", "bedroom", "other"]
    expected = [{"kitchen": 0, "bedroom": 1}.get(s, 2) for s in scene_types]
    assert dataset.labels.tolist() == expected
    rgb, depth = dataset["rgb"].numpy(), dataset["depth"].numpy()
    # orientation survives the transposes: brightness grows down the rows, depth along the columns
    assert np.all(np.diff(rgb[:, 0].mean(2), axis=1) > 0) and np.allclose(rgb[:, 0].std(2), 0, atol=0.01)
    assert np.all(np.diff(depth[:, 0].mean(1), axis=1) > 0) and np.allclose(depth[:, 0].std(1), 0, atol=1e-5)
    assert np.allclose(depth[:, 0].mean((1, 2)), 5 + np.arange(13), atol=0.05)  # metres kept
    assert rgb.max() <= 1 and len(np.unique(dataset.groups)) == 6  # scenes as groups


def test_nyu_rejects_a_file_that_is_not_hdf5(tmp_path, root, capsys):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / nyu_depth_v2.NYU_MAT).write_bytes(b"MATLAB 5.0 MAT-file, not v7.3")
    assert (
        download.run(without_checksums(nyu_depth_v2.NYU_DEPTH_V2), ["--data-dir", str(root), "--raw-dir", str(raw)])
        == 1
    )
    error = capsys.readouterr().err
    assert "not a MATLAB v7.3 (HDF5) file" in error and "Traceback" not in error


# --- EuroSAT MS + SAR ------------------------------------------------------------------------


def tiff_bytes(array: np.ndarray, planar: bool) -> bytes:
    import tifffile

    buffer = io.BytesIO()
    tifffile.imwrite(buffer, array, photometric="minisblack", planarconfig="separate" if planar else "contig")
    return buffer.getvalue()


def make_eurosat_raw(raw: Path, classes=("AnnualCrop", "Forest", "SeaLake"), per_class: int = 3) -> None:
    raw.mkdir(parents=True)
    ms, sar = {}, {}
    for name in classes:
        label = eurosat_ms_sar.EUROSAT_CLASSES.index(name)
        for i in range(1, per_class + 1):
            bands = (label * 100 + np.arange(13))[:, None, None] * np.ones((13, 8, 8))
            ms[f"EuroSAT_MS/{name}/{name}_{i}.tif"] = tiff_bytes(bands.astype(np.uint16), planar=True)
            polarisations = np.stack([np.full((8, 8), -10.0 - label), np.full((8, 8), -20.0 - label)], axis=-1)
            sar[f"EuroSAT-SAR/{name}/{name}_{i}.tif"] = tiff_bytes(polarisations.astype(np.float32), planar=False)
    ms["EuroSAT_MS/Forest/Forest_99.tif"] = ms["EuroSAT_MS/Forest/Forest_1.tif"]  # no SAR partner
    write_zip(raw / eurosat_ms_sar.EUROSAT_MS_ZIP, ms)
    write_zip(raw / eurosat_ms_sar.EUROSAT_SAR_ZIP, sar)


def test_eurosat_ms_sar_from_geotiff_fixture(tmp_path, root):
    raw = tmp_path / "raw"
    make_eurosat_raw(raw)
    dataset = convert(eurosat_ms_sar.EUROSAT_MS_SAR, raw, root, "--size", "4", "--max-per-class", "2")
    assert len(dataset) == 6 and dataset.shape("ms") == (13, 4, 4) and dataset.shape("sar") == (2, 4, 4)
    labels = dataset.labels.numpy()
    assert sorted(set(labels)) == [0, 1, 9]
    # the pairs belong together: both modalities encode the same class
    ms_expected = (labels[:, None] * 100 + np.arange(13)) / 10000
    assert np.allclose(dataset["ms"].numpy().mean((2, 3)), ms_expected, atol=1e-6)
    assert np.allclose(dataset["sar"].numpy().mean((2, 3)), np.stack([-10.0 - labels, -20.0 - labels], 1))
    assert cache.read_manifest("eurosat_ms_sar")["meta"]["unpaired"] == {"ms_only": 1, "sar_only": 0}


def test_eurosat_archives_without_common_patches_fail_clearly(tmp_path, root, capsys):
    raw = tmp_path / "raw"
    make_eurosat_raw(raw)
    write_zip(raw / eurosat_ms_sar.EUROSAT_SAR_ZIP, {"EuroSAT-SAR/Forest/other_name.tif": b"x"})
    assert (
        download.run(without_checksums(eurosat_ms_sar.EUROSAT_MS_SAR), ["--data-dir", str(root), "--raw-dir", str(raw)])
        == 1
    )
    assert "no patch appears in both zips" in capsys.readouterr().err


# --- RAVDESS ---------------------------------------------------------------------------------


def mp4_bytes(red: int, n_frames: int = 6, width: int = 64, height: int = 48) -> bytes:
    import av

    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for _ in range(n_frames):
            image = np.zeros((height, width, 3), dtype=np.uint8)
            image[..., 0] = red
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


def make_ravdess_raw(raw: Path) -> None:
    raw.mkdir(parents=True)
    audio = {}
    for actor in (1, 2, 3):
        video = {}
        for emotion in (1, 3, 5):
            for statement in (1, 2):
                stem = f"01-{emotion:02d}-01-{statement:02d}-01-{actor:02d}"
                audio[f"Actor_{actor:02d}/03-{stem}.wav"] = wav_bytes(tone(200 * emotion, 16000, 0.6), 16000)
                video[f"Actor_{actor:02d}/01-{stem}.mp4"] = mp4_bytes(red=40 * emotion)
                video[f"Actor_{actor:02d}/02-{stem}.mp4"] = b"video-only recording, skipped"
        if actor != 3:
            write_zip(raw / ravdess.ravdess_video_zip(actor), video)
    write_zip(raw / ravdess.RAVDESS_AUDIO_ZIP, audio)


def test_ravdess_from_wav_and_mp4_fixture(tmp_path, root):
    raw = tmp_path / "raw"
    make_ravdess_raw(raw)
    options = [
        "--actors",
        "1-2",
        "--n-frames",
        "2",
        "--image-size",
        "16",
        "--n-mels",
        "16",
        "--audio-frames",
        "12",
        "--seconds",
        "0.5",
    ]
    dataset = convert(ravdess.RAVDESS, raw, root, *options)
    assert len(dataset) == 12 and dataset.shape("audio") == (1, 16, 12) and dataset.shape("face") == (6, 16, 16)
    assert sorted(set(dataset.labels.tolist())) == [0, 2, 4] and sorted(set(dataset.groups.tolist())) == [1, 2]
    assert cache.class_names("ravdess")[4] == "angry"
    # face frames and audio belong to the same utterance: both rise with the emotion code
    red = dataset["face"][:, 0].mean((1, 2)).numpy() * 255
    assert np.allclose(red, 40 * (dataset.labels.numpy() + 1), atol=8)
    peak = dataset["audio"][:, 0].mean(-1).argmax(-1).numpy()
    assert all(peak[dataset.labels == 0].max() < peak[dataset.labels == e].min() for e in (2, 4))
    frames = datasets.load("ravdess", stack_frames=False)
    assert frames.shape("face") == (2, 3, 16, 16)


def test_ravdess_actor_option_is_checked(capsys, root):
    assert download.run(ravdess.RAVDESS, ["--data-dir", str(root), "--actors", "0-30"]) == 1
    assert "actors are numbered 1 to 24" in capsys.readouterr().err
    assert ravdess.parse_actors("1-3, 7") == [1, 2, 3, 7]


# --- network failures and the scripts themselves ---------------------------------------------


@pytest.mark.parametrize("name", download.DOWNLOADS.names())
def test_unreachable_server_gives_a_clear_message(name, tmp_path, root, capsys):
    status = download.run(
        download.DOWNLOADS.get(name),
        ["--data-dir", str(root), "--raw-dir", str(tmp_path / "raw"), "--mirror", UNREACHABLE, "--quiet"],
    )
    error = capsys.readouterr().err
    assert status == 1
    assert error.startswith("error: could not download") and "127.0.0.1:9" in error and "run the script again" in error
    assert "Traceback" not in error


@pytest.mark.parametrize("name", download.DOWNLOADS.names())
def test_each_script_runs_its_spec(name, tmp_path, monkeypatch, capsys):
    script = REPO / "data_scripts" / f"get_{name}.py"
    assert download.DOWNLOADS.get(name).script == f"python data_scripts/get_{name}.py"
    before = os.environ.get(cache.ENV_VAR)
    monkeypatch.setattr(sys, "argv", [str(script), "--data-dir", str(tmp_path), "--mirror", UNREACHABLE, "--quiet"])
    with pytest.raises(SystemExit) as stopped:
        runpy.run_path(str(script), run_name="__main__")
    assert stopped.value.code == 1 and "could not download" in capsys.readouterr().err
    assert (tmp_path / "raw" / name).is_dir()  # --data-dir was used ...
    assert os.environ.get(cache.ENV_VAR) == before  # ... without changing the process's data folder


def test_script_as_a_process_fails_without_a_traceback(tmp_path):
    command = [
        sys.executable,
        str(REPO / "data_scripts" / "get_nyu_depth_v2.py"),
        "--data-dir",
        str(tmp_path),
        "--mirror",
        UNREACHABLE,
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)}
    )
    assert done.returncode == 1
    assert "could not download nyu_depth_v2_labeled.mat" in done.stderr and "Traceback" not in done.stderr


def test_cli_download_rejects_an_unknown_name_listing_the_valid_ones(capsys):
    assert main(["datasets", "download", "no_such_data"]) == 2
    valid = ", ".join(download.DOWNLOADS.names())
    assert (
        capsys.readouterr().err.strip() == f"error: unknown downloadable dataset 'no_such_data'; valid names: {valid}"
    )


@pytest.mark.parametrize("name", download.DOWNLOADS.names())
def test_cli_download_help_lists_the_options_of_a_known_name(name, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["datasets", "download", name, "--help"])
    assert stopped.value.code == 0
    shown = capsys.readouterr().out
    assert shown.startswith(f"usage: python -m cmkd_lab datasets download {name} ")
    flags = ["--data-dir", "--mirror"] + [
        "--" + option.replace("_", "-") for option in download.DOWNLOADS.get(name).options()
    ]
    assert all(flag in shown for flag in flags), shown


def test_cli_download_passes_its_options_on(tmp_path, capsys):
    """The command runs the named spec with the options after the name, as the script does."""
    assert (
        main(["datasets", "download", "avmnist", "--data-dir", str(tmp_path), "--mirror", UNREACHABLE, "--quiet"]) == 1
    )
    assert "could not download" in capsys.readouterr().err
    assert (tmp_path / "raw" / "avmnist").is_dir()


# --- the fetcher: resume, restart, checksums -------------------------------------------------


class RangeServer:
    """A local HTTP server for one payload; honours Range unless told not to, can cut a response short."""

    def __init__(self, payload: bytes):
        self.payload, self.ranges, self.honour_range, self.cut_after = payload, [], True, None
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                header = self.headers.get("Range")
                server.ranges.append(header)
                start = int(header.split("=")[1].split("-")[0]) if header and server.honour_range else 0
                body = server.payload[start:]
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body if server.cut_after is None else body[: server.cut_after])

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/file.bin"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    payload = np.random.default_rng(1).bytes(300_000)
    running = RangeServer(payload)
    yield running
    running.close()


def quiet_fetch(source, folder):
    return fetch(source, folder, progress=False, timeout=10, log=lambda message: None)


def test_fetch_resumes_a_partial_download(server, tmp_path):
    source = Source("file.bin", server.url, sha256=hashlib.sha256(server.payload).hexdigest())
    (tmp_path / "file.bin.part").write_bytes(server.payload[:100_000])
    path = quiet_fetch(source, tmp_path)
    assert path.read_bytes() == server.payload and server.ranges == ["bytes=100000-"]
    assert not (tmp_path / "file.bin.part").exists()
    assert quiet_fetch(source, tmp_path) == path and len(server.ranges) == 1  # present and verified: no request


def test_fetch_restarts_when_the_server_ignores_range(server, tmp_path):
    server.honour_range = False
    (tmp_path / "file.bin.part").write_bytes(b"stale bytes")
    source = Source("file.bin", server.url, sha256=hashlib.sha256(server.payload).hexdigest())
    assert quiet_fetch(source, tmp_path).read_bytes() == server.payload


def test_fetch_keeps_what_arrived_when_the_connection_drops(server, tmp_path):
    source = Source("file.bin", server.url, md5=hashlib.md5(server.payload).hexdigest())
    server.cut_after = 120_000
    with pytest.raises(DownloadError, match="120,000 bytes already fetched are kept and it will resume"):
        quiet_fetch(source, tmp_path)
    server.cut_after = None
    assert quiet_fetch(source, tmp_path).read_bytes() == server.payload
    assert server.ranges[-1] == "bytes=120000-"


def test_fetch_rejects_a_wrong_checksum(server, tmp_path):
    source = Source("file.bin", server.url, sha256="0" * 64)
    with pytest.raises(ChecksumError, match="expected 0000"):
        quiet_fetch(source, tmp_path)
    assert not list(tmp_path.iterdir())  # neither the file nor a .part is left


def test_fetch_records_an_unknown_checksum(server, tmp_path):
    path = quiet_fetch(Source("file.bin", server.url), tmp_path)
    assert download.recorded_checksums(tmp_path) == {"file.bin": hashlib.sha256(server.payload).hexdigest()}
    path.write_bytes(b"tampered")
    with pytest.raises(ChecksumError):
        quiet_fetch(Source("file.bin", server.url), tmp_path)


def test_log_mel_spectrogram_finds_the_tone():
    low = formats.log_mel_spectrogram(tone(300, 8000, 1.0), 8000, n_mels=32, n_frames=40, seconds=1.0)
    high = formats.log_mel_spectrogram(tone(2000, 8000, 1.0), 8000, n_mels=32, n_frames=40, seconds=1.0)
    assert low.shape == (32, 40) and low.mean(1).argmax() < high.mean(1).argmax()
    short = formats.log_mel_spectrogram(tone(300, 8000, 0.25), 8000, n_mels=32, n_frames=40, seconds=1.0)
    assert short[:, -5:].max() < short[:, :5].max() - 10  # padding beyond the signal is silent
