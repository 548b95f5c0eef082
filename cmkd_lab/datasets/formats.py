"""The raw formats the download converters read, decoded with numpy (no dataset-specific code).

Gzipped IDX (:func:`read_idx`), WAV bytes (:func:`read_wav`) and log mel spectrograms
(:func:`log_mel_spectrogram`), area-averaged shrinking (:func:`area_resize`), centre crops and
the members of a zip (:func:`zip_members`). A file not in the expected layout raises
:class:`FormatError`. One module per downloadable dataset (:mod:`.avmnist`,
:mod:`.nyu_depth_v2`, :mod:`.eurosat_ms_sar`, :mod:`.ravdess`) builds on these.
"""

from __future__ import annotations

import gzip
import io
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from . import cache


class FormatError(cache.DataError):
    """A raw file is not in the layout the converter expects."""


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
