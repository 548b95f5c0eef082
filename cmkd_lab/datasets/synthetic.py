"""Synthetic paired data: plain functions of their knobs and a seed.

All generators share one mechanism, :func:`planted_gaussian`: a decisive Gaussian latent
``xs`` sets the label through a hyperplane; each modality is Gaussian noise with some of the
latent's dimensions planted at given positions. Which latent dimensions each modality sees
draws the modality Venn diagram of MFH: shared ones are modality-general, the others
modality-specific, the rest of each modality is noise.

Study generators (MFH Fig. 2, Fig. 3 and Table 2; their settings in ``shared/papers.md``)
return the train/test :class:`~cmkd_lab.datasets.core.Splits` and their Venn ratios
(:func:`mfh_table2_draws` also Table 2's fresh training draw);
:func:`ntdh_multiclass` is NTDH's 4-class ``make_classification`` set-up. :func:`sensor_windows`
is a sensor-like set of paired (channels, time) windows, for sizing real-data protocols.
:func:`cmcd_modalities` renders one class latent through two random nonlinear maps, with a knob
``alpha`` for the modality distance (CMCD).

Runs are independent: with the kit's generators (``rng="kit"``, the default) every run draws its
task, train, test (and fresh) sets from parts of its own seed sequence
(:func:`~cmkd_lab.datasets.core.run_seeds`, one stream per generator), so no sample of one run is
a sample of another. At one seed, the settings of a sweep share their draws (MFH's latent xs is
the same whatever the overlap), so settings are compared on the same samples.
``rng="official"`` replays the official scripts' draws instead, which do overlap across runs
(:func:`official_generator`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .core import SPLIT_PARTS, PairedDataset, Splits, from_arrays, run_generator, run_state

MFH_HYPERPLANE_DIMS = 500


def venn_ratios(shared: int, a_specific: int, b_specific: int) -> dict[str, float]:
    """α (a-specific), β (b-specific) and γ (shared) fractions of the decisive features seen."""
    total = shared + a_specific + b_specific
    if total <= 0:
        raise ValueError("at least one decisive feature is needed (shared + a_specific + b_specific > 0)")
    return {"alpha": a_specific / total, "beta": b_specific / total, "gamma": shared / total}


def labels_from_hyperplane(latent: np.ndarray, hyperplane: np.ndarray) -> np.ndarray:
    """``1[xs·h > 0]`` for a vector ``h``; ``argmax(xs H)`` for a matrix ``H`` (one column per class)."""
    scores = latent @ hyperplane
    return (scores > 0).astype(np.int64) if hyperplane.ndim == 1 else scores.argmax(axis=1).astype(np.int64)


def planted_gaussian(
    n_samples: int,
    hyperplane: np.ndarray,
    a_dims: int,
    a_latent: Sequence[int],
    b_dims: int,
    b_latent: Sequence[int],
    rng: np.random.Generator,
    a_positions: Sequence[int] | None = None,
    b_positions: Sequence[int] | None = None,
    name: str = "planted_gaussian",
    a_first: bool = False,
) -> PairedDataset:
    """Paired Gaussian modalities with latent dimensions planted into them.

    ``xs ~ N(0, I_D)`` with ``D = len(hyperplane)``; modality a is ``N(0, I_a_dims)`` noise with
    ``xs[:, a_latent]`` written at ``a_positions`` (default: the same indices), likewise b.
    Draw order: xs, then b, then a (so the same seed gives the same xs whatever a's layout);
    ``a_first``: xs, then a, then b (MFH's Table 2 script).
    """
    raw = _gaussian_draw(rng, n_samples, hyperplane.shape[0], a_dims, b_dims, a_first)
    return _planted(raw, hyperplane, a_latent, b_latent, a_positions, b_positions, name)


class _RawDraw(NamedTuple):
    """One draw of :func:`planted_gaussian` before planting: the latent and each modality's noise."""

    latent: np.ndarray
    a_noise: np.ndarray
    b_noise: np.ndarray


def _gaussian_draw(
    rng: np.random.Generator | np.random.RandomState,
    n_samples: int,
    latent_dims: int,
    a_dims: int,
    b_dims: int,
    a_first: bool = False,
) -> _RawDraw:
    latent = rng.standard_normal((n_samples, latent_dims))
    if a_first:
        a_noise = rng.standard_normal((n_samples, a_dims))
        b_noise = rng.standard_normal((n_samples, b_dims))
    else:
        b_noise = rng.standard_normal((n_samples, b_dims))
        a_noise = rng.standard_normal((n_samples, a_dims))
    return _RawDraw(latent, a_noise, b_noise)


def _planted(
    raw: _RawDraw,
    hyperplane: np.ndarray,
    a_latent: Sequence[int],
    b_latent: Sequence[int],
    a_positions: Sequence[int] | None,
    b_positions: Sequence[int] | None,
    name: str,
) -> PairedDataset:
    """``raw``'s noise (copied, so a shared draw stays as drawn) with the latent planted, labelled by ``hyperplane``."""
    latent_dims = hyperplane.shape[0]
    a_positions = list(a_latent) if a_positions is None else list(a_positions)
    b_positions = list(b_latent) if b_positions is None else list(b_positions)
    for modality, dims, latent, positions in (
        ("a", raw.a_noise.shape[1], a_latent, a_positions),
        ("b", raw.b_noise.shape[1], b_latent, b_positions),
    ):
        if (
            len(latent) != len(positions)
            or any(not 0 <= i < latent_dims for i in latent)
            or any(not 0 <= p < dims for p in positions)
        ):
            raise ValueError(
                f"modality {modality}: latent indices must lie in 0..{latent_dims - 1} and positions in 0..{dims - 1}"
            )
    x_a, x_b = raw.a_noise.copy(), raw.b_noise.copy()
    x_a[:, a_positions] = raw.latent[:, list(a_latent)]
    x_b[:, b_positions] = raw.latent[:, list(b_latent)]
    n_classes = 2 if hyperplane.ndim == 1 else hyperplane.shape[1]  # a small draw may miss a class
    return from_arrays(
        {"a": x_a, "b": x_b},
        labels_from_hyperplane(raw.latent, hyperplane),
        name=name,
        class_names=[str(c) for c in range(n_classes)],
    )


def _hyperplane(rng: np.random.Generator, dims: int, n_classes: int) -> np.ndarray:
    if n_classes < 2:
        raise ValueError(f"n_classes must be >= 2, got {n_classes}")
    if n_classes == 2:
        return (
            rng.standard_normal(MFH_HYPERPLANE_DIMS)[:dims]
            if dims <= MFH_HYPERPLANE_DIMS
            else rng.standard_normal(dims)
        )
    return rng.standard_normal((dims, n_classes))


RNG_MODES = ("kit", "official")


def official_generator(seed: int) -> np.random.RandomState:
    """NumPy's legacy generator seeded as the official scripts' ``np.random.seed(seed)``: its
    ``standard_normal`` gives the same numbers as their ``np.random.randn``."""
    return np.random.RandomState(seed)


def _train_test(seed: int, n_train: int, n_test: int, draw, rng: str = "kit", draws: dict | None = None) -> Splits:
    """MFH's protocol: per run a hyperplane, a train set and a test set, all sharing the hyperplane.

    ``rng="kit"``: each from its own part (``task``, ``train``, ``test``) of run ``seed``'s seed
    sequence for the generator (``draw.name``). ``"official"``: as the official Gaussian scripts
    (MFH gauss/main.py, NTDH gauss/main.py) draw them: hyperplane ``randn(500)``, then xs, x_b, x_a
    of the train set from ``np.random.seed(s)``, and the test set's from ``np.random.seed(s + 1)``.
    Those overlap across runs: run s + 1's train set is drawn from the stream run s's test set was
    drawn from, after the hyperplane, so its latent rows are rows of run s's test set.

    ``draws`` (kit mode): a dict that the calls of one sweep share. A part's numbers depend only
    on the run, the generator and the shapes drawn, not on where the latent is planted, so the
    settings of a run that draw the same shapes (every overlap of MFH Fig. 2, both class counts
    of NTDH's sweep) take one draw from it, planted per call: equal to separate calls.
    """
    if rng not in RNG_MODES:
        raise ValueError(f"unknown rng {rng!r}; valid: {', '.join(RNG_MODES)}")
    if rng == "official":
        task = train = official_generator(seed)  # one stream: the hyperplane, then the train set
        test = official_generator(seed + 1)
        hyperplane = draw.hyperplane(task)
        return Splits(train=draw(n_train, hyperplane, train), val=None, test=draw(n_test, hyperplane, test))
    if draws is None:
        draws = {}  # nothing shared beyond this call

    def shared(key: tuple, make):
        if key not in draws:
            draws[key] = make()
        return draws[key]

    hyperplane = draw.fixed_hyperplane
    if hyperplane is None:
        hyperplane = shared(
            ("task", seed, draw.name, draw.latent_dims, draw.n_classes),
            lambda: draw.hyperplane(run_generator(seed, draw.name, "task")),
        )
    parts = {}
    for part, n in (("train", n_train), ("test", n_test)):
        shape = (n, draw.latent_dims, draw.a_dims, draw.b_dims, draw.a_first)
        raw = shared(
            (part, seed, draw.name, *shape),
            lambda part=part, shape=shape: draw.raw(run_generator(seed, draw.name, part), *shape),
        )
        parts[part] = draw.plant(raw, hyperplane)
    return Splits(train=parts["train"], val=None, test=parts["test"])


@dataclass(frozen=True)
class _Layout:
    """Which latent dimensions each modality sees; called to draw ``n`` samples."""

    latent_dims: int
    a_dims: int
    a_latent: tuple[int, ...]
    b_dims: int
    b_latent: tuple[int, ...]
    name: str
    n_classes: int = 2
    fixed_hyperplane: np.ndarray | None = None
    a_first: bool = False

    def hyperplane(self, rng: np.random.Generator) -> np.ndarray:
        if self.fixed_hyperplane is not None:
            return self.fixed_hyperplane
        return _hyperplane(rng, self.latent_dims, self.n_classes)

    def __call__(self, n: int, hyperplane: np.ndarray, rng: np.random.Generator) -> PairedDataset:
        return self.plant(self.raw(rng, n, self.latent_dims, self.a_dims, self.b_dims, self.a_first), hyperplane)

    raw = staticmethod(_gaussian_draw)

    def plant(self, raw: _RawDraw, hyperplane: np.ndarray) -> PairedDataset:
        return _planted(raw, hyperplane, self.a_latent, self.b_latent, None, None, self.name)


def mfh_overlap(
    overlap: int,
    seed: int,
    n_train: int = 200,
    n_test: int = 1000,
    a_dims: int = 25,
    b_dims: int = 50,
    n_classes: int = 2,
    rng: str = "kit",
    draws: dict | None = None,
) -> tuple[Splits, dict[str, float]]:
    """MFH Fig. 2 (vary γ): ``xs`` 20-d; b sees ``xs[0:10]``, a sees ``xs[10-o:20-o]`` at the same indices.

    γ = o/(20-o), α = β = (10-o)/(20-o). NTDH uses it with ``a_dims = b_dims = 25`` and, in the
    kit's K-class extension, ``n_classes > 2`` (labels ``argmax(xs H)``). ``rng`` and ``draws``
    (one dict for a sweep's calls: each run's draw made once): see :func:`_train_test`.
    """
    if not 0 <= overlap <= 10:
        raise ValueError(f"overlap must lie in 0..10, got {overlap}")
    layout = _Layout(
        20, a_dims, tuple(range(10 - overlap, 20 - overlap)), b_dims, tuple(range(10)), "mfh_overlap", n_classes
    )
    return _train_test(seed, n_train, n_test, layout, rng, draws), venn_ratios(overlap, 10 - overlap, 10 - overlap)


def mfh_teacher_specific(
    xs1: int, seed: int, n_train: int = 200, n_test: int = 1000, rng: str = "kit", draws: dict | None = None
) -> tuple[Splits, dict[str, float]]:
    """MFH Fig. 3 (vary α): ``xs`` 50-d; b sees ``xs[0:10]``, a sees ``xs[0:xs1+10]``; both 50-d.

    α = xs1/(xs1+10), β = 0, γ = 10/(xs1+10). ``rng`` and ``draws``: see :func:`_train_test`.
    """
    if not 0 <= xs1 <= 40:
        raise ValueError(f"xs1 must lie in 0..40, got {xs1}")
    layout = _Layout(50, 50, tuple(range(xs1 + 10)), 50, tuple(range(10)), "mfh_teacher_specific")
    return _train_test(seed, n_train, n_test, layout, rng, draws), venn_ratios(10, xs1, 0)


def _table2_layout(xs2: int, xs1: int) -> _Layout:
    if xs2 < 1 or xs1 < 0 or xs1 + xs2 > 50:
        raise ValueError(f"need xs2 >= 1, xs1 >= 0 and xs1 + xs2 <= 50; got xs1={xs1}, xs2={xs2}")
    return _Layout(
        xs1 + xs2, 50, tuple(range(xs1 + xs2)), 50, tuple(range(xs2)), "mfh_table2", fixed_hyperplane=np.ones(xs1 + xs2)
    )


def mfh_table2(
    xs2: int, seed: int, xs1: int = 10, n_train: int = 200, n_test: int = 1000
) -> tuple[Splits, dict[str, float]]:
    """MFH Table 2: ``y = 1[Σ xs > 0]`` over ``xs1 + xs2`` dims; a sees all of them (first
    ``xs2`` shared), b sees the first ``xs2``; both 50-d. γ = xs2/(xs1+xs2), β = 0."""
    return _train_test(seed, n_train, n_test, _table2_layout(xs2, xs1)), venn_ratios(xs2, xs1, 0)


class Table2Draws(NamedTuple):
    """One run of MFH Table 2: the regular teacher's ``splits`` (train and test), the ``fresh``
    training draw the students and the modality-general teachers train on, the Venn ``shares``,
    and the NumPy ``generator`` the run's later draws continue from."""

    splits: Splits
    fresh: PairedDataset
    shares: dict[str, float]
    generator: np.random.Generator | np.random.RandomState


def mfh_table2_draws(
    xs2: int, seed: int, xs1: int = 10, n_train: int = 200, n_test: int = 1000, rng: str = "kit"
) -> Table2Draws:
    """The data of one run of MFH Table 2 (:func:`mfh_table2`'s layout). ``rng="kit"``: the
    train set, the test set and the fresh training draw from the ``train``, ``test`` and ``fresh``
    parts of run ``seed``'s seed sequence. ``"official"``: as ``gauss/main_modify_gamma.py`` draws
    them: after ``np.random.seed(s)`` the train set, the test set and the fresh draw, one after the
    other from the one generator (no reseeding), each drawn xs, then x_a, then x_b."""
    layout = _table2_layout(xs2, xs1)
    hyperplane = layout.fixed_hyperplane
    if rng == "official":
        generator = official_generator(seed)
        layout = dataclasses.replace(layout, a_first=True)
        splits = Splits(
            train=layout(n_train, hyperplane, generator), val=None, test=layout(n_test, hyperplane, generator)
        )
    else:
        splits = _train_test(seed, n_train, n_test, layout, rng)
        generator = run_generator(seed, layout.name, "fresh")
    return Table2Draws(splits, layout(n_train, hyperplane, generator), venn_ratios(xs2, xs1, 0), generator)


def gaussian_venn(
    n_samples: int = 600,
    shared: int = 10,
    a_specific: int = 10,
    b_specific: int = 10,
    a_noise: int = 5,
    b_noise: int = 20,
    n_classes: int = 2,
    seed: int = 0,
    task_seed: int = 0,
    part: str = "train",
) -> PairedDataset:
    """Two Gaussian modalities whose decisive features overlap by ``shared`` dimensions.

    Latent of ``shared + a_specific + b_specific`` dims; the hyperplane comes from run
    ``task_seed`` (so train and test draws of one task share it), the samples from part ``part``
    (``"train"``, ``"val"`` or ``"test"``) of run ``seed``: a run's train and test sets are
    ``seed=s, part="train"`` and ``seed=s, part="test"``, independent of each other and of every
    other run's. Modality a is ``[shared, a-specific, a_noise noise dims]``, b is ``[shared,
    b-specific, b_noise noise dims]``.
    """
    for knob, value in dict(
        shared=shared,
        a_specific=a_specific,
        b_specific=b_specific,
        a_noise=a_noise,
        b_noise=b_noise,
        n_samples=n_samples,
    ).items():
        if int(value) != value or value < 0:
            raise ValueError(f"{knob} must be a non-negative integer, got {value!r}")
    venn_ratios(shared, a_specific, b_specific)
    if part not in SPLIT_PARTS:
        raise ValueError(f"unknown part {part!r}; valid: {', '.join(SPLIT_PARTS)}")
    latent_dims = shared + a_specific + b_specific
    hyperplane = _hyperplane(run_generator(task_seed, "gaussian_venn", "task"), latent_dims, n_classes)
    a_latent = list(range(shared + a_specific))
    b_latent = list(range(shared)) + list(range(shared + a_specific, latent_dims))
    return planted_gaussian(
        n_samples,
        hyperplane,
        shared + a_specific + a_noise,
        a_latent,
        shared + b_specific + b_noise,
        b_latent,
        run_generator(seed, "gaussian_venn", part),
        a_positions=range(len(a_latent)),
        b_positions=range(len(b_latent)),
        name="gaussian_venn",
    )


NTDH_SAMPLES, NTDH_TRAIN = 10_000, 6_000
NTDH_STREAM = "ntdh_multiclass"


@functools.lru_cache(maxsize=16)  # one set per run, shared by the run's shifts
def _make_classification(random_state: int) -> tuple[np.ndarray, np.ndarray]:
    """NTDH's 4-class set (papers.md §2): 10000 samples, 50 informative features; standardised
    with the first 6000 (training) samples' statistics."""
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=NTDH_SAMPLES,
        n_classes=4,
        n_features=50,
        n_informative=50,
        n_redundant=0,
        n_clusters_per_class=1,
        random_state=random_state,
    )
    train = x[:NTDH_TRAIN]
    return ((x - train.mean(0)) / train.std(0)).astype(np.float32), y


def ntdh_multiclass(shift: int, seed: int) -> Splits:
    """NTDH's 4-class task: student x_b = noise(50) with X[:, 0:20]; teacher x_a = noise(50) with
    X[:, 20-v:40-v], v = ``shift``, so γ = v/20; samples 0..5999 of X train, 6000..9999 test.

    NTDH's script draws one X (``random_state=42``) for all its runs; the kit draws one per run,
    from the ``task`` part of run ``seed``'s seed sequence, so that runs share no sample. The
    noise of the train and test rows comes from the run's ``train`` and ``test`` parts (the
    student's first, so it does not depend on v).
    """
    if not 0 <= shift <= 20:
        raise ValueError(f"shift v must lie in 0..20, got {shift}")
    x, y = _make_classification(run_state(seed, NTDH_STREAM, "task"))
    parts = {}
    for part, rows in (("train", slice(0, NTDH_TRAIN)), ("test", slice(NTDH_TRAIN, None))):
        rng = run_generator(seed, NTDH_STREAM, part)
        x_b = rng.standard_normal(x[rows].shape).astype(np.float32)
        x_a = rng.standard_normal(x[rows].shape).astype(np.float32)
        x_b[:, 0:20] = x[rows, 0:20]
        x_a[:, 20 - shift : 40 - shift] = x[rows, 20 - shift : 40 - shift]
        parts[part] = from_arrays({"a": x_a, "b": x_b}, y[rows], name="ntdh_make_classification")
    return Splits(train=parts["train"], val=None, test=parts["test"])


def sensor_windows(
    n_windows: int = 10_000,
    channels: int = 3,
    length: int = 128,
    n_classes: int = 6,
    n_subjects: int = 20,
    noise: float = 1.0,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Two paired sensor modalities ``"accel"`` and ``"gyro"``, ``(n_windows, channels, length)``
    each, with ``labels`` and ``subjects`` (for group splits), as :func:`numpy.savez` would take them.

    Like activity windows: each class has a posture (a constant per channel, as gravity gives an
    accelerometer) and a rhythm (a sinusoid of the class's frequency, random phase). Each modality
    sees both through its own random gains, plus a per-subject offset and white noise of standard
    deviation ``noise``. Both modalities see the class; neither sees it without noise. Everything
    comes from the ``pool`` part of run ``seed``'s seed sequence.
    """
    rng = run_generator(seed, "sensor_windows", "pool")
    labels = rng.integers(0, n_classes, n_windows)
    labels[:n_classes] = np.arange(n_classes)  # every class present, however few windows
    subjects = rng.integers(0, n_subjects, n_windows)
    posture = rng.normal(0, 1, (n_classes, channels, 1))
    frequencies = np.linspace(1.0, 4.0, n_classes)  # cycles per window
    time = np.arange(length) / length
    phase = rng.uniform(0, 2 * np.pi, (n_windows, 1, 1))
    rhythm = np.sin(2 * np.pi * frequencies[labels][:, None, None] * time + phase)
    arrays = {}
    for name in ("accel", "gyro"):
        posture_gain, rhythm_gain = rng.uniform(0.2, 1.0, (2, 1, channels, 1))
        offset = rng.normal(0, 0.5, (n_subjects, channels, 1))[subjects]
        signal = posture_gain * posture[labels] + rhythm_gain * rhythm + offset
        arrays[name] = (signal + rng.normal(0, noise, (n_windows, channels, length))).astype(np.float32)
    return {**arrays, "labels": labels, "subjects": subjects}


CMCD_MAP_HIDDEN = 64  # width of the random tanh network that renders a latent as a modality


def _random_tanh_map(rng: np.random.Generator, in_dims: int, out_dims: int):
    """A fixed random 2-layer network ``x ↦ tanh(x W1 + b1) W2``, weights drawn from ``rng``.

    W1 is scaled by 1/√in_dims so unit-scale inputs give unit-scale pre-activations (tanh bends
    but rarely saturates); the bias makes the map not odd, so it is not just a warped linear map.
    """
    first = rng.standard_normal((in_dims, CMCD_MAP_HIDDEN)) / np.sqrt(in_dims)
    bias = rng.standard_normal(CMCD_MAP_HIDDEN)
    second = rng.standard_normal((CMCD_MAP_HIDDEN, out_dims)) / np.sqrt(CMCD_MAP_HIDDEN)
    return lambda latent: np.tanh(latent @ first + bias) @ second


def cmcd_modalities(
    alpha: float,
    seed: int,
    n_samples: int = 3000,
    *,
    n_classes: int = 4,
    latent_dim: int = 8,
    source_dim: int = 32,
    target_dim: int = 32,
    class_spread: float = 0.5,
    noise: float = 0.3,
    map_seed: int = 0,
) -> PairedDataset:
    """Paired ``"source"`` and ``"target"`` modalities whose modality distance grows with ``alpha``
    (for CMCD, arXiv 2405.03355).

    A shared class latent ``c`` (``latent_dim`` dims): class k's mean is ``√latent_dim · q_k``
    with ``q_1..q_K`` orthonormal (so every pair of classes is equally far apart; needs
    ``n_classes <= latent_dim``), plus ``class_spread`` · N(0, I) within the class. A nuisance
    latent ``z ~ N(0, I)`` of the same dims, independent of the class (its scale matches the
    class means'). Each modality is its own fixed random tanh network (:data:`CMCD_MAP_HIDDEN`
    hidden units) plus ``noise`` · N(0, I)::

        source = map_s(c) + noise
        target = map_t((1 - alpha) · c + alpha · z) + noise

    At ``alpha = 0`` both modalities render the same class latent (through different maps); as
    ``alpha`` grows the target sees less of the class and more of a nuisance the source never
    sees, and at ``alpha = 1`` the target carries no label information. Only the target moves
    with ``alpha``: at a fixed ``seed`` the source is the same array for every ``alpha``.

    The class means and both maps come from run ``map_seed``'s ``task`` part (fixed across
    ``seed`` and ``alpha``, so train and test draws share them); labels (balanced, every class
    present), latents and noise from run ``seed``'s ``pool`` part, which no other seed draws.
    With the defaults and standardised features, a logistic regression on the target scores
    about 1.0, 0.99, 0.86, 0.48 and chance (0.25) at alpha = 0, 0.25, 0.5, 0.75 and 1; on the
    source about 1.0.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha (the share of nuisance in the target's latent) must lie in [0, 1], got {alpha!r}")
    if not 2 <= n_classes <= latent_dim:
        raise ValueError(
            f"n_classes must lie in 2..latent_dim ({latent_dim}) so the class means can be orthogonal, got {n_classes}"
        )
    if n_samples < n_classes:
        raise ValueError(
            f"n_samples must be at least n_classes ({n_classes}) so every class is present, got {n_samples}"
        )
    map_rng = run_generator(map_seed, "cmcd_modalities", "task")
    orthonormal, _ = np.linalg.qr(map_rng.standard_normal((latent_dim, n_classes)))
    class_means = np.sqrt(latent_dim) * orthonormal.T  # per-dim RMS 1, like the nuisance
    source_map = _random_tanh_map(map_rng, latent_dim, source_dim)
    target_map = _random_tanh_map(map_rng, latent_dim, target_dim)

    # every draw happens before alpha is used, so alpha changes nothing but the target's mix
    rng = run_generator(seed, "cmcd_modalities", "pool")
    labels = rng.permutation(np.arange(n_samples) % n_classes)
    class_latent = class_means[labels] + class_spread * rng.standard_normal((n_samples, latent_dim))
    nuisance = rng.standard_normal((n_samples, latent_dim))
    source = source_map(class_latent) + noise * rng.standard_normal((n_samples, source_dim))
    target = target_map((1 - alpha) * class_latent + alpha * nuisance) + noise * rng.standard_normal(
        (n_samples, target_dim)
    )
    return from_arrays(
        {"source": source.astype(np.float32), "target": target.astype(np.float32)}, labels, name=f"cmcd_alpha{alpha:g}"
    )


def _register() -> None:
    from . import register_dataset

    register_dataset(
        "gaussian_venn",
        kind="synthetic",
        description="two Gaussian modalities with a tunable modality Venn diagram (shared/specific/noise dims)",
    )(gaussian_venn)
    register_dataset(
        "cmcd_modalities",
        kind="synthetic",
        description="source and target modalities of one class latent; alpha mixes a nuisance into the target (CMCD)",
    )(cmcd_modalities)


_register()


# ----------------------------------------------------------------------------- DisCoM-KD
def discom_modalities(
    n_samples: int = 2000,
    seed: int = 0,
    *,
    n_modalities: int = 2,
    n_classes: int = 4,
    shared_dim: int = 4,
    specific_dim: int = 4,
    irrelevant_dim: int = 4,
    modality_dim: int = 32,
    class_spread: float = 1.5,
    noise: float = 0.3,
    map_seed: int = 0,
) -> PairedDataset:
    """Paired modalities ``"a"``, ``"b"``, … built from shared, specific and irrelevant latents
    (for DisCoM-KD, arXiv 2408.07080).

    Per sample of class y: a **shared** latent (``shared_dim`` dims) that every modality sees,
    drawn around a class mean; per modality m a **specific** latent (``specific_dim``) that only m
    sees, around m's own class mean; and per modality an **irrelevant** latent (``irrelevant_dim``)
    that carries no label, drawn around a mean of m's own (so it tells the modalities apart). The
    class means are ``√dim`` times orthonormal directions (or random unit directions when there are
    more classes than dims), so a latent's class signal grows with ``1 / class_spread``. Modality m
    is its own fixed random tanh network of ``[shared, specific_m, irrelevant_m]`` plus ``noise`` ·
    N(0, I), ``modality_dim`` values wide.

    The class means, irrelevant means and maps come from run ``map_seed``'s ``task`` part (fixed
    across ``seed``); labels (balanced, every class present), latents and noise from run
    ``seed``'s ``pool`` part, which no other seed draws. With the defaults, a logistic regression
    on one standardised modality scores about 0.72 (chance 0.25), and on two modalities together
    about 0.80: each modality misses the other's specific latent.
    """
    if n_modalities < 2 or n_modalities > 26:
        raise ValueError(f"n_modalities must lie in 2..26, got {n_modalities}")
    if n_classes < 2:
        raise ValueError(f"n_classes must be >= 2, got {n_classes}")
    for knob, value in dict(
        shared_dim=shared_dim, specific_dim=specific_dim, irrelevant_dim=irrelevant_dim, modality_dim=modality_dim
    ).items():
        if value < 1:
            raise ValueError(f"{knob} must be >= 1, got {value}")
    if n_samples < n_classes:
        raise ValueError(
            f"n_samples must be at least n_classes ({n_classes}) so every class is present, got {n_samples}"
        )
    map_rng = run_generator(map_seed, "discom_modalities", "task")

    def class_means(dims: int) -> np.ndarray:
        directions = map_rng.standard_normal((dims, n_classes))
        if n_classes <= dims:
            directions, _ = np.linalg.qr(directions)
        else:
            directions /= np.linalg.norm(directions, axis=0, keepdims=True)
        return np.sqrt(dims) * directions.T

    shared_means = class_means(shared_dim)
    names = [chr(ord("a") + i) for i in range(n_modalities)]
    specific_means = {m: class_means(specific_dim) for m in names}
    irrelevant_means = {m: map_rng.standard_normal(irrelevant_dim) for m in names}
    maps = {m: _random_tanh_map(map_rng, shared_dim + specific_dim + irrelevant_dim, modality_dim) for m in names}

    rng = run_generator(seed, "discom_modalities", "pool")
    labels = rng.permutation(np.arange(n_samples) % n_classes)
    shared = shared_means[labels] + class_spread * rng.standard_normal((n_samples, shared_dim))
    modalities = {}
    for m in names:
        specific = specific_means[m][labels] + class_spread * rng.standard_normal((n_samples, specific_dim))
        irrelevant = irrelevant_means[m] + rng.standard_normal((n_samples, irrelevant_dim))
        latent = np.concatenate([shared, specific, irrelevant], axis=1)
        modalities[m] = (maps[m](latent) + noise * rng.standard_normal((n_samples, modality_dim))).astype(np.float32)
    return from_arrays(modalities, labels, name="discom_modalities")


def _register_discom() -> None:
    from . import register_dataset

    register_dataset(
        "discom_modalities",
        kind="synthetic",
        description="two or more modalities of shared, modality-specific and label-irrelevant latents (DisCoM-KD)",
    )(discom_modalities)


_register_discom()
