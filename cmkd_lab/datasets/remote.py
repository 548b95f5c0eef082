"""The papers' datasets that need a download: AV-MNIST, NYU Depth V2, EuroSAT MS+SAR, RAVDESS.

Each is a :class:`~cmkd_lab.datasets.download.DownloadSpec` (sources, checksums, converter), run by
a thin script in ``data_scripts/``, and a loader registered with kind "download":
``cmkd_lab.datasets.load("avmnist")`` reads the converted arrays offline, and says which script to
run when they are absent. The converters read the raw files in their published formats (gzipped
IDX, WAV in a zip, MATLAB v7.3 = HDF5, GeoTIFF in a zip, MP4 in a zip) and shrink them to sizes a
CPU notebook can train on; their options are the scripts' command-line flags.
"""

from __future__ import annotations

import gzip
import io
import re
import zipfile
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from . import cache
from .core import PairedDataset, from_arrays
from .download import DownloadSpec, Source


class FormatError(cache.DataError):
    """A raw file is not in the layout the converter expects."""


# --- format helpers shared by the converters ------------------------------------------------

def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (MNIST's format), gzipped or not."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as handle:
        data = handle.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise FormatError(f"{path} is not an IDX file (bad magic number)")
    dtypes = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if data[2] not in dtypes:
        raise FormatError(f"{path}: unknown IDX data type 0x{data[2]:02x}")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    values = np.frombuffer(data, dtype=dtypes[data[2]], offset=4 + 4 * ndim)
    if values.size != int(np.prod(shape)):
        raise FormatError(f"{path}: header says shape {shape} but holds {values.size} values (truncated?)")
    return values.reshape(shape)


def read_wav(data: bytes) -> tuple[np.ndarray, int]:
    """Decode WAV bytes to float32 mono in [-1, 1]; returns (signal, sample_rate)."""
    from scipy.io import wavfile

    sample_rate, signal = wavfile.read(io.BytesIO(data))
    if signal.dtype.kind in "iu":
        info = np.iinfo(signal.dtype)
        signal = (signal.astype(np.float32) - (info.max + info.min + 1) / 2) / ((info.max - info.min + 1) / 2)
    signal = signal.astype(np.float32)
    return (signal.mean(axis=1) if signal.ndim == 2 else signal), int(sample_rate)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """Triangular filters equally spaced on the HTK mel scale, shape (n_mels, n_fft // 2 + 1)."""
    def to_mel(hz):
        return 2595 * np.log10(1 + np.asarray(hz) / 700)

    def to_hz(mel):
        return 700 * (10 ** (np.asarray(mel) / 2595) - 1)

    edges = to_hz(np.linspace(0, to_mel(sample_rate / 2), n_mels + 2))
    bins = np.fft.rfftfreq(n_fft, 1 / sample_rate)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins - lower) / np.maximum(centre - lower, 1e-9)
    falling = (upper - bins) / np.maximum(upper - centre, 1e-9)
    return np.clip(np.minimum(rising, falling), 0, None)


def log_mel_spectrogram(signal: np.ndarray, sample_rate: int, n_mels: int, n_frames: int, seconds: float) -> np.ndarray:
    """Log mel power spectrogram of the first ``seconds`` of ``signal``, shape (n_mels, n_frames).

    Frames are ``seconds / n_frames`` apart with Hann windows twice that long; shorter signals
    are zero-padded at the end, longer ones cut.
    """
    hop = max(1, int(round(seconds * sample_rate / n_frames)))
    window = 2 * hop
    n_fft = 1 << (window - 1).bit_length()
    padded = np.zeros(hop * (n_frames - 1) + window, dtype=np.float32)
    usable = signal[: len(padded)]
    padded[: len(usable)] = usable
    frames = np.lib.stride_tricks.sliding_window_view(padded, window)[::hop][:n_frames] * np.hanning(window)
    power = np.abs(np.fft.rfft(frames, n=n_fft, axis=1)) ** 2
    mel = mel_filterbank(sample_rate, n_fft, n_mels) @ power.T
    return np.log(mel + 1e-10).astype(np.float32)


def area_resize(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize (N, C, H, W) images by area averaging (anti-aliased shrinking); returns float32."""
    tensor = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    return torch.nn.functional.interpolate(tensor, size=(height, width), mode="area").numpy()


def centre_square(image: np.ndarray) -> np.ndarray:
    """The central square crop of an (H, W, ...) image."""
    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return image[top : top + side, left : left + side]


def zip_members(path: Path, pattern: str) -> Iterator[tuple[re.Match, zipfile.ZipFile, str]]:
    """(match, archive, member) for each member of the zip whose path matches ``pattern`` (re.search)."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise FormatError(f"{path} is not a readable zip file ({error}); delete it and run the script again") from None
    with archive:
        for member in sorted(archive.namelist()):
            match = re.search(pattern, member)
            if match:
                yield match, archive, member


def _load(name: str, names: list[str] | None = None) -> tuple[dict[str, np.ndarray], dict]:
    return cache.read_arrays(name, names=names)


# --- AV-MNIST: MNIST digits + Free Spoken Digit Dataset recordings --------------------------

MNIST_BASE = "https://ossci-datasets.s3.amazonaws.com/mnist/"
MNIST_FILES = {
    # filename: (sha256, size); the digests are the widely published ones for the original files
    "train-images-idx3-ubyte.gz": ("440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", 9912422),
    "train-labels-idx1-ubyte.gz": ("3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", 28881),
    "t10k-images-idx3-ubyte.gz": ("8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", 1648877),
    "t10k-labels-idx1-ubyte.gz": ("f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", 4542),
}
FSDD_ZIP = "free-spoken-digit-dataset-1.0.10.zip"
FSDD_PATTERN = r"recordings/(\d)_([A-Za-z]+)_(\d+)\.wav$"


def convert_avmnist(
    raw: Path, *, images_per_recording: int = 5, n_mels: int = 32, n_frames: int = 64, seed: int = 0
) -> tuple[dict[str, np.ndarray], dict]:
    """Pair each spoken digit with ``images_per_recording`` distinct MNIST images of the same digit.

    MNIST's train and test images are pooled (the kit makes its own splits). Audio becomes a log
    mel spectrogram of the first second (``n_mels`` x ``n_frames``), stored once per recording.
    """
    images = np.concatenate([read_idx(raw / "train-images-idx3-ubyte.gz"), read_idx(raw / "t10k-images-idx3-ubyte.gz")])
    image_labels = np.concatenate([read_idx(raw / "train-labels-idx1-ubyte.gz"), read_idx(raw / "t10k-labels-idx1-ubyte.gz")])
    if images.shape[1:] != (28, 28) or len(images) != len(image_labels):
        raise FormatError(f"MNIST files hold images of shape {images.shape} and {len(image_labels)} labels")
    spectrograms, digits, speakers = [], [], []
    for match, archive, member in zip_members(raw / FSDD_ZIP, FSDD_PATTERN):
        signal, sample_rate = read_wav(archive.read(member))
        spectrograms.append(log_mel_spectrogram(signal, sample_rate, n_mels, n_frames, seconds=1.0))
        digits.append(int(match.group(1)))
        speakers.append(match.group(2))
    if not spectrograms:
        raise FormatError(f"no recordings/<digit>_<speaker>_<n>.wav files found in {raw / FSDD_ZIP}")
    digits = np.asarray(digits)
    rng = np.random.default_rng(seed)
    pair_images, pair_recordings = [], []
    for digit in range(10):
        recordings = np.flatnonzero(digits == digit)
        candidates = rng.permutation(np.flatnonzero(image_labels == digit))
        needed = len(recordings) * images_per_recording
        if needed > len(candidates):
            raise FormatError(
                f"digit {digit}: {len(recordings)} recordings x {images_per_recording} images need {needed} "
                f"MNIST images, only {len(candidates)} exist; lower --images-per-recording"
            )
        pair_images.append(candidates[:needed])
        pair_recordings.append(np.repeat(recordings, images_per_recording))
    pair_images, pair_recordings = np.concatenate(pair_images), np.concatenate(pair_recordings)
    speaker_names = sorted(set(speakers))
    arrays = {
        "images": images[pair_images],
        "labels": image_labels[pair_images].astype(np.int64),
        "pair_recording": pair_recordings.astype(np.int64),
        "spectrograms": np.stack(spectrograms),
        "recording_digit": digits.astype(np.int64),
        "recording_speaker": np.array([speaker_names.index(s) for s in speakers], dtype=np.int64),
    }
    meta = {"class_names": [str(d) for d in range(10)], "speakers": speaker_names}
    return arrays, meta


def avmnist(group_by: str = "recording") -> PairedDataset:
    """AV-MNIST: ``image`` (1x28x28 in [0, 1]) paired with ``audio`` (1 x mels x frames, log mel).

    Each recording is paired with several images, so splits are grouped: ``group_by="recording"``
    keeps every recording in one split part, ``"speaker"`` keeps every speaker in one.
    """
    if group_by not in ("recording", "speaker"):
        raise ValueError(f"group_by must be 'recording' or 'speaker', got {group_by!r}")
    arrays, meta = _load("avmnist")
    recording = arrays["pair_recording"]
    groups = recording if group_by == "recording" else arrays["recording_speaker"][recording]
    return from_arrays(
        {"image": arrays["images"][:, None] / np.float32(255), "audio": arrays["spectrograms"][recording][:, None]},
        arrays["labels"],
        groups=groups,
        name="avmnist",
        class_names=meta["class_names"],
    )


AVMNIST = DownloadSpec(
    name="avmnist",
    script="python data_scripts/get_avmnist.py",
    description="AV-MNIST (MNIST digit images paired with Free Spoken Digit Dataset recordings)",
    sources=tuple(Source(f, MNIST_BASE + f, sha256=sha, size=size) for f, (sha, size) in MNIST_FILES.items())
    + (
        # A GitHub tag archive: its sha256 is not known to the kit in advance (it is recorded on first download).
        Source(FSDD_ZIP, "https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/tags/v1.0.10.zip"),
    ),
    convert=convert_avmnist,
    notes="About 12 MB of MNIST and 16 MB of recordings; the converted data is about 40 MB.",
    option_help={
        "images_per_recording": "distinct MNIST images paired with each of the 3000 recordings",
        "n_mels": "mel bands of the audio spectrogram",
        "n_frames": "time frames of the audio spectrogram (covering 1 s)",
        "seed": "seed of the image/recording pairing",
    },
)


# --- NYU Depth V2, labeled subset: RGB + depth, scene classes --------------------------------

NYU_MAT = "nyu_depth_v2_labeled.mat"


def _matlab_strings(handle, dataset) -> list[str]:
    """Decode a MATLAB cell array of strings stored in HDF5 (each cell a reference to uint16 chars)."""
    return ["".join(map(chr, np.asarray(handle[ref]).ravel())) for ref in np.asarray(dataset).ravel()]


def convert_nyu_depth_v2(
    raw: Path, *, height: int = 60, width: int = 80, n_scene_classes: int = 10, chunk: int = 64
) -> tuple[dict[str, np.ndarray], dict]:
    """RGB and depth of the 1449 labeled frames, shrunk to ``height`` x ``width``; scene type as label.

    The ``n_scene_classes - 1`` most frequent scene types keep their names, the rest become
    "other". The scene (e.g. kitchen_0003) is kept as a group: frames of one scene are near
    duplicates and must not be split between train and test.
    """
    import h5py

    path = raw / NYU_MAT
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise FormatError(f"{path} is not a MATLAB v7.3 (HDF5) file ({error}); delete it and run the script again") from None
    with handle:
        for key in ("images", "depths", "sceneTypes", "scenes"):
            if key not in handle:
                raise FormatError(f"{path} has no {key!r} variable; found {sorted(handle)}")
        images, depths = handle["images"], handle["depths"]  # MATLAB column-major: (N, 3, W, H), (N, W, H)
        n = images.shape[0]
        rgb = np.empty((n, 3, height, width), dtype=np.uint8)
        depth = np.empty((n, 1, height, width), dtype=np.float32)
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            block = np.asarray(images[start:stop]).transpose(0, 1, 3, 2)
            rgb[start:stop] = np.clip(np.rint(area_resize(block, height, width)), 0, 255)
            block = np.asarray(depths[start:stop]).transpose(0, 2, 1)[:, None]
            depth[start:stop] = area_resize(block, height, width)
        scene_types = _matlab_strings(handle, handle["sceneTypes"])
        scenes = _matlab_strings(handle, handle["scenes"])
    if len(scene_types) != n or len(scenes) != n:
        raise FormatError(f"{path}: {n} images but {len(scene_types)} scene types and {len(scenes)} scenes")
    names, counts = np.unique(scene_types, return_counts=True)
    frequent = [str(s) for s in names[np.lexsort((names, -counts))][: n_scene_classes - 1]]
    class_names = frequent + (["other"] if len(names) > len(frequent) else [])
    labels = np.array([class_names.index(s) if s in frequent else len(frequent) for s in scene_types], dtype=np.int64)
    scene_names = sorted(set(scenes))
    arrays = {
        "rgb": rgb,
        "depth": depth,
        "labels": labels,
        "scene": np.array([scene_names.index(s) for s in scenes], dtype=np.int64),
    }
    return arrays, {"class_names": class_names, "scenes": scene_names, "depth_unit": "metres"}


def nyu_depth_v2() -> PairedDataset:
    """NYU Depth V2 labeled frames: ``rgb`` (3xHxW in [0, 1]) and ``depth`` (1xHxW, metres); scene groups."""
    arrays, meta = _load("nyu_depth_v2")
    return from_arrays(
        {"rgb": arrays["rgb"] / np.float32(255), "depth": arrays["depth"]},
        arrays["labels"],
        groups=arrays["scene"],
        name="nyu_depth_v2",
        class_names=meta["class_names"],
    )


NYU_DEPTH_V2 = DownloadSpec(
    name="nyu_depth_v2",
    script="python data_scripts/get_nyu_depth_v2.py",
    description="NYU Depth V2, labeled subset (1449 aligned RGB + depth frames, scene types)",
    # The kit knows no checksum for this file in advance: it is recorded on first download.
    sources=(Source(NYU_MAT, "http://horatio.cs.nyu.edu/mit/silberman/nyu_depth_v2/nyu_depth_v2_labeled.mat"),),
    convert=convert_nyu_depth_v2,
    notes="The .mat file is about 2.8 GB (MATLAB v7.3, read with h5py); the converted data is about 50 MB.",
    option_help={
        "height": "image height after shrinking (source: 480)",
        "width": "image width after shrinking (source: 640)",
        "n_scene_classes": "the most frequent scene types kept as classes, the last class being 'other'",
        "chunk": "frames read from the .mat file at a time (memory)",
    },
)


# --- EuroSAT: Sentinel-2 multispectral (13 bands) + Sentinel-1 SAR (VV, VH) ------------------

EUROSAT_CLASSES = [
    "AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial",
    "Pasture", "PermanentCrop", "Residential", "River", "SeaLake",
]
EUROSAT_MS_ZIP = "EuroSAT_MS.zip"
EUROSAT_SAR_ZIP = "EuroSAT-SAR.zip"
EUROSAT_PATTERN = r"(?:^|/)(" + "|".join(EUROSAT_CLASSES) + r")/([^/]+)\.tiff?$"


def _read_tiff(data: bytes, bands: int, member: str) -> np.ndarray:
    """A GeoTIFF patch as (bands, H, W), whichever way its samples are interleaved."""
    import tifffile

    image = tifffile.imread(io.BytesIO(data))
    if image.ndim == 3 and image.shape[0] == bands:  # bands stored as separate planes
        return image
    if image.ndim == 3 and image.shape[-1] == bands:  # bands interleaved per pixel
        return np.moveaxis(image, -1, 0)
    raise FormatError(f"{member}: expected a {bands}-band image, got an array of shape {image.shape}")


def _tiff_index(path: Path) -> dict[tuple[str, str], str]:
    return {(m.group(1), m.group(2)): member for m, _, member in zip_members(path, EUROSAT_PATTERN)}


def convert_eurosat_ms_sar(
    raw: Path, *, size: int = 32, max_per_class: int = 1000, seed: int = 0
) -> tuple[dict[str, np.ndarray], dict]:
    """Pair each EuroSAT-MS patch with the EuroSAT-SAR patch of the same class folder and file name.

    Patches (64x64) are shrunk to ``size`` by area averaging; ``max_per_class`` (0 = all) patches
    per class are drawn with ``seed``. MS keeps the 13 Sentinel-2 bands as stored (uint16, B01..B12
    then B8A); SAR keeps its two bands (VV, VH) as stored.
    """
    ms_index, sar_index = _tiff_index(raw / EUROSAT_MS_ZIP), _tiff_index(raw / EUROSAT_SAR_ZIP)
    common = sorted(set(ms_index) & set(sar_index))
    if not common:
        raise FormatError(
            f"no patch appears in both zips under <class>/<name>.tif (MS e.g. {sorted(ms_index)[:2]}, "
            f"SAR e.g. {sorted(sar_index)[:2]}); the archive layout is not the expected one"
        )
    rng = np.random.default_rng(seed)
    chosen = []
    for name in EUROSAT_CLASSES:
        keys = [k for k in common if k[0] == name]
        if max_per_class and len(keys) > max_per_class:
            keys = [keys[i] for i in np.sort(rng.choice(len(keys), max_per_class, replace=False))]
        chosen.extend(keys)
    ms = np.empty((len(chosen), 13, size, size), dtype=np.uint16)
    sar = np.empty((len(chosen), 2, size, size), dtype=np.float32)
    with zipfile.ZipFile(raw / EUROSAT_MS_ZIP) as ms_zip, zipfile.ZipFile(raw / EUROSAT_SAR_ZIP) as sar_zip:
        for start in range(0, len(chosen), 512):  # in blocks: 27,000 float patches would not fit in memory
            block = chosen[start : start + 512]
            ms_block = np.stack([_read_tiff(ms_zip.read(ms_index[k]), 13, ms_index[k]) for k in block])
            sar_block = np.stack([_read_tiff(sar_zip.read(sar_index[k]), 2, sar_index[k]) for k in block])
            ms[start : start + len(block)] = np.clip(np.rint(area_resize(ms_block, size, size)), 0, 65535)
            sar[start : start + len(block)] = area_resize(sar_block, size, size)
    arrays = {
        "ms": ms,
        "sar": sar,
        "labels": np.array([EUROSAT_CLASSES.index(k[0]) for k in chosen], dtype=np.int64),
    }
    meta = {
        "class_names": EUROSAT_CLASSES,
        "unpaired": {"ms_only": len(ms_index) - len(common), "sar_only": len(sar_index) - len(common)},
        "ms_bands": ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12", "B8A"],
        "sar_bands": ["VV", "VH"],
    }
    return arrays, meta


def eurosat_ms_sar() -> PairedDataset:
    """EuroSAT patches: ``ms`` (13 bands, reflectance = stored value / 10000) and ``sar`` (VV, VH as stored)."""
    arrays, meta = _load("eurosat_ms_sar")
    return from_arrays({"ms": arrays["ms"] / np.float32(10000), "sar": arrays["sar"]}, arrays["labels"], name="eurosat_ms_sar",
                       class_names=meta["class_names"])


EUROSAT_MS_SAR = DownloadSpec(
    name="eurosat_ms_sar",
    script="python data_scripts/get_eurosat_ms_sar.py",
    description="EuroSAT-MS (Sentinel-2, 13 bands) paired with EuroSAT-SAR (Sentinel-1, VV+VH), 10 land-cover classes",
    sources=(
        # Zenodo publishes an md5 for this file, no sha256; the sha256 is recorded on first download.
        Source(EUROSAT_MS_ZIP, "https://zenodo.org/records/7711810/files/EuroSAT_MS.zip?download=1",
               md5="091174add3c8e680a49244acf185b9f0", size=2065402329),
        # The kit knows no checksum for this file in advance: it is recorded on first download.
        Source(EUROSAT_SAR_ZIP, "https://huggingface.co/datasets/wangyi111/EuroSAT-SAR/resolve/main/EuroSAT-SAR.zip"),
    ),
    convert=convert_eurosat_ms_sar,
    notes=(
        "About 2.0 GB (MS) + 0.9 GB (SAR); the converted data is about 350 MB at the defaults. Patches are paired by class folder and file name; the "
        "converter stops with a clear error if the two archives share none."
    ),
    option_help={
        "size": "patch side after shrinking (source: 64)",
        "max_per_class": "patches drawn per class, 0 for all (27,000 in all)",
        "seed": "seed of the per-class draw",
    },
)


# --- RAVDESS: speech audio + face video frames, 8 emotions -----------------------------------

RAVDESS_BASE = "https://zenodo.org/records/1188976/files/"
RAVDESS_AUDIO_ZIP = "Audio_Speech_Actors_01-24.zip"
RAVDESS_EMOTIONS = ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]
# modality-channel-emotion-intensity-statement-repetition-actor; modality 01 = audio+video, 03 = audio
RAVDESS_NAME = r"-01-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)"


def ravdess_video_zip(actor: int) -> str:
    return f"Video_Speech_Actor_{actor:02d}.zip"


def parse_actors(actors: str) -> list[int]:
    """ "1-24", "1,3,5" or "1-4,9" -> sorted actor numbers."""
    chosen = set()
    for part in actors.split(","):
        first, _, last = part.strip().partition("-")
        try:
            chosen.update(range(int(first), int(last or first) + 1))
        except ValueError:
            raise ValueError(f"actors must look like '1-24' or '1,3,5', got {actors!r}") from None
    if not chosen or min(chosen) < 1 or max(chosen) > 24:
        raise ValueError(f"actors are numbered 1 to 24, got {actors!r}")
    return sorted(chosen)


def _video_frames(data: bytes, n_frames: int, image_size: int, member: str) -> np.ndarray:
    """``n_frames`` evenly spaced frames of an MP4, centre-cropped square, as (n_frames, 3, S, S) uint8."""
    import av

    try:
        with av.open(io.BytesIO(data)) as container:
            stream = container.streams.video[0]
            frames = []
            for frame in container.decode(stream):
                scale = max(1, min(frame.width, frame.height) // (2 * image_size))  # decode small, then average
                frames.append(centre_square(frame.to_ndarray(format="rgb24", width=frame.width // scale,
                                                             height=frame.height // scale)))
    except (av.error.FFmpegError, IndexError) as error:
        raise FormatError(f"{member}: cannot decode the video ({error})") from None
    if not frames:
        raise FormatError(f"{member}: the video has no frames")
    picks = np.linspace(0, len(frames) - 1, n_frames).round().astype(int)
    chosen = np.stack([frames[i] for i in picks]).transpose(0, 3, 1, 2)
    return np.clip(np.rint(area_resize(chosen, image_size, image_size)), 0, 255).astype(np.uint8)


def convert_ravdess(
    raw: Path, *, actors: str = "1-24", n_frames: int = 4, image_size: int = 64, n_mels: int = 64,
    audio_frames: int = 128, seconds: float = 4.0,
) -> tuple[dict[str, np.ndarray], dict]:
    """Pair each spoken utterance's audio (WAV) with frames of its audio-visual recording (MP4).

    Audio: log mel spectrogram of the first ``seconds`` (``n_mels`` x ``audio_frames``). Video:
    ``n_frames`` evenly spaced frames, centre square crop (the face fills the middle of the
    1280x720 frame), shrunk to ``image_size``. Label: emotion (8 classes); group: actor.
    """
    chosen = parse_actors(actors)
    audio = {}
    for match, archive, member in zip_members(raw / RAVDESS_AUDIO_ZIP, r"(?:^|/)03" + RAVDESS_NAME + r"\.wav$"):
        if int(match.group(5)) in chosen:
            audio[match.groups()] = member
    if not audio:
        raise FormatError(f"no Actor_XX/03-01-*.wav files of actors {actors} found in {raw / RAVDESS_AUDIO_ZIP}")
    spectrograms, frames, keys = [], [], []
    with zipfile.ZipFile(raw / RAVDESS_AUDIO_ZIP) as audio_zip:
        for actor in chosen:
            for match, video_zip, member in zip_members(raw / ravdess_video_zip(actor), r"(?:^|/)01" + RAVDESS_NAME + r"\.mp4$"):
                key = match.groups()
                if key not in audio:
                    continue
                signal, sample_rate = read_wav(audio_zip.read(audio[key]))
                spectrograms.append(log_mel_spectrogram(signal, sample_rate, n_mels, audio_frames, seconds))
                frames.append(_video_frames(video_zip.read(member), n_frames, image_size, member))
                keys.append([int(k) for k in key])
    if not keys:
        raise FormatError(f"no audio-visual recording (Actor_XX/01-01-*.mp4) matches an audio file for actors {actors}")
    keys = np.asarray(keys)
    arrays = {
        "audio": np.stack(spectrograms),
        "frames": np.stack(frames),
        "labels": keys[:, 0] - 1,
        "intensity": keys[:, 1],
        "statement": keys[:, 2],
        "actor": keys[:, 4],
    }
    return arrays, {"class_names": RAVDESS_EMOTIONS, "actors": chosen}


def ravdess(stack_frames: bool = True) -> PairedDataset:
    """RAVDESS speech: ``audio`` (1 x mels x frames, log mel) and ``face`` frames in [0, 1]; actors as groups.

    ``stack_frames=True`` gives ``face`` as (3*frames, S, S) for a 2-D CNN; False as (frames, 3, S, S).
    """
    arrays, meta = _load("ravdess")
    face = arrays["frames"] / np.float32(255)
    if stack_frames:
        face = face.reshape(len(face), -1, *face.shape[-2:])
    return from_arrays({"audio": arrays["audio"][:, None], "face": face}, arrays["labels"], groups=arrays["actor"], name="ravdess",
                       class_names=meta["class_names"])


RAVDESS = DownloadSpec(
    name="ravdess",
    script="python data_scripts/get_ravdess.py",
    description="RAVDESS emotional speech (audio + face video frames, 8 emotions, 24 actors)",
    # Zenodo publishes md5 checksums for these files that the kit does not hold: each file's
    # sha256 is recorded on first download.
    sources=(Source(RAVDESS_AUDIO_ZIP, RAVDESS_BASE + RAVDESS_AUDIO_ZIP + "?download=1"),)
    + tuple(Source(ravdess_video_zip(a), RAVDESS_BASE + ravdess_video_zip(a) + "?download=1") for a in range(1, 25)),
    convert=convert_ravdess,
    needs=lambda options: [RAVDESS_AUDIO_ZIP] + [ravdess_video_zip(a) for a in parse_actors(options["actors"])],
    notes="About 0.2 GB of audio and 24 x ~0.5 GB of video (use --actors to fetch fewer); the converted data is about 120 MB.",
    option_help={
        "actors": "which actors to download and convert, e.g. 1-24 or 1-4",
        "n_frames": "video frames kept per utterance",
        "image_size": "side of the square face frames",
        "n_mels": "mel bands of the audio spectrogram",
        "audio_frames": "time frames of the audio spectrogram",
        "seconds": "audio duration covered by the spectrogram",
    },
)


SPECS = {spec.name: spec for spec in (AVMNIST, NYU_DEPTH_V2, EUROSAT_MS_SAR, RAVDESS)}
LOADERS = {"avmnist": avmnist, "nyu_depth_v2": nyu_depth_v2, "eurosat_ms_sar": eurosat_ms_sar, "ravdess": ravdess}


def _register() -> None:
    from . import register_dataset

    for name, spec in SPECS.items():
        cache.set_create_command(name, spec.script)
        register_dataset(
            name, kind="download", description=spec.description, is_available=lambda name=name: cache.is_prepared(name)
        )(LOADERS[name])


_register()

__all__ = ["SPECS", "AVMNIST", "NYU_DEPTH_V2", "EUROSAT_MS_SAR", "RAVDESS", "avmnist", "nyu_depth_v2",
           "eurosat_ms_sar", "ravdess", "read_idx", "read_wav", "log_mel_spectrogram", "area_resize"]
