"""AV-MNIST: MNIST digits paired with Free Spoken Digit Dataset recordings (a download dataset).

``python -m cmkd_lab datasets download avmnist`` (or ``python data_scripts/get_avmnist.py``) runs
:data:`AVMNIST`: it fetches the files and :func:`convert_avmnist` shrinks them into the kit's
cache; :func:`avmnist`, registered as dataset ``"avmnist"``, reads them offline.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .core import PairedDataset, from_arrays
from .download import DownloadSpec, Source, register_download
from .formats import FormatError, _load, log_mel_spectrogram, read_idx, read_wav, zip_members

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
    image_labels = np.concatenate(
        [read_idx(raw / "train-labels-idx1-ubyte.gz"), read_idx(raw / "t10k-labels-idx1-ubyte.gz")]
    )
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


register_download(AVMNIST, avmnist)
