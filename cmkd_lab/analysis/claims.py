"""Claims and their verdicts: the one place in the kit where a verdict is computed.

A claim is stated before the data: what it says (``claim``), where it comes from (``source``:
"MFH §4, Fig. 2", or "kit"), its ``kind``, the ``quantity`` measured and its ``unit``, the
``prediction`` (``"> 0"``, ``"< 0"`` or ``"= 0"``) and the smallest effect of interest
(``sesoi``, in the claim's units). :func:`judge` takes the per-unit values (one per
independent unit: seed, dataset, unordered pair) and returns the claim's row;
:func:`judge_correlation` does the same for a rank correlation over units. :func:`table`
gathers rows, applies Holm's adjustment within each kind (a notebook's paper claims are one
family) and gives each row its verdict by :data:`RULE`.

Kinds:

- ``paper``: what a seed paper states; the only kind that counts as support for a paper;
- ``finding``: the kit's own result, beyond the papers;
- ``check``: a method does what its definition says (a loss moves the statistic it optimises);
  never support for a paper.

The statistics are library calls: the mean's interval and p-value from
:func:`scipy.stats.ttest_1samp`, equivalence from statsmodels' TOST
(:meth:`~statsmodels.stats.weightstats.DescrStatsW.ttost_mean`), correlations from
:func:`scipy.stats.spearmanr` with :func:`scipy.stats.bootstrap` over units (clusters resampled
whole), Holm from :func:`statsmodels.stats.multitest.multipletests`, and the smallest effect a
run could resolve from statsmodels' power solvers.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

PREDICTIONS = ("> 0", "< 0", "= 0")
KINDS = ("paper", "finding", "check")
VERDICTS = ("held", "not held", "not resolved")
ALPHA = 0.05
CONFIDENCE = 0.95
POWER = 0.8  # the power at which the smallest resolvable effect is stated
N_BOOT = 2000
MAX_UNITS_SEARCHED = 10_000

COLUMNS = (
    "claim",
    "setting",
    "source",
    "kind",
    "quantity",
    "unit",
    "prediction",
    "sesoi",
    "estimate",
    "ci_low",
    "ci_high",
    "n_units",
    "p_value",
    "p_adjusted",
    "resolvable",
    "verdict",
    "note",
)

RULE = f"""\
**The verdict rule** (one for the whole kit: `cmkd_lab.analysis.claims`). Each claim states, before
the data, its prediction (`> 0`, `< 0` or `= 0`) and its smallest effect of interest (sesoi, in the
claim's units). The estimate's {CONFIDENCE:.0%} interval is taken over independent units (seeds,
datasets, unordered pairs; a correlation's by bootstrap over those units). p-values are Holm-adjusted
within each kind of claim in a notebook (its paper claims are one family).

- `> 0` (mirror for `< 0`): **held** when the interval lies above 0, reaches the sesoi and the
  adjusted p < {ALPHA}; **not held** when the interval lies below 0, or wholly inside (−sesoi, +sesoi)
  (too small to matter); **not resolved** otherwise.
- `= 0` ("no gain"): **held** only by equivalence: the interval wholly inside (−sesoi, +sesoi) and
  the adjusted TOST p < {ALPHA}; **not held** when the interval excludes 0 and is not wholly inside
  the margin; **not resolved** otherwise. Absence of evidence never holds a claim.
- A comparison whose models ended at chance, or with fewer than 2 units, is **not resolved**.
- Kinds: `paper` (a seed paper's claim), `finding` (the kit's own), `check` (a method does what its
  definition says). Only paper claims count as support for a paper.
"""


@dataclass(frozen=True)
class Claim:
    """A claim stated before the data; :meth:`judge` and :meth:`judge_correlation` measure it.

    Parameters
    ----------
    claim : str
        What it says, in a sentence.
    source : str
        Where it comes from: "MFH §4, Fig. 2", or "kit".
    kind : {"paper", "finding", "check"}
        A seed paper's claim, the kit's own finding, or a check that a method does what its
        definition says; only ``"paper"`` counts as support for a paper.
    quantity : str
        What is measured (e.g. "mean difference", "rank correlation").
    unit : str
        Its unit (e.g. "accuracy points", "Spearman ρ").
    prediction : {"> 0", "< 0", "= 0"}
        The predicted sign; ``"= 0"`` ("no gain") is shown by equivalence within ±``sesoi``.
    sesoi : float
        The smallest effect of interest (> 0), in ``unit``.
    """

    claim: str
    source: str
    kind: str
    quantity: str
    unit: str
    prediction: str
    sesoi: float

    def __post_init__(self):
        _check_statement(self.kind, self.prediction, self.sesoi)

    def judge(self, values, **options) -> dict:
        """:func:`judge` with this statement.

        Parameters
        ----------
        values : sequence of float, shape (n,)
            One value per unit.
        **options
            As in :func:`judge` (``setting``, ``clusters``, ``at_chance``, ``note``).

        Returns
        -------
        dict
            The claim's row (:data:`COLUMNS`).
        """
        return judge(values, self.prediction, self.sesoi, **self._statement(), **options)

    def judge_correlation(self, x, y, **options) -> dict:
        """:func:`judge_correlation` with this statement.

        Parameters
        ----------
        x, y : sequence of float, shape (n,)
        **options
            As in :func:`judge_correlation` (``setting``, ``clusters``, ``strata``, ``n_boot``,
            ``seed``, ``at_chance``, ``note``).

        Returns
        -------
        dict
            The claim's row (:data:`COLUMNS`).
        """
        return judge_correlation(x, y, self.prediction, self.sesoi, **self._statement(), **options)

    def _statement(self) -> dict:
        statement = asdict(self)
        for key in ("prediction", "sesoi"):
            statement.pop(key)
        return statement


def judge(
    values: Sequence[float],
    prediction: str,
    sesoi: float,
    *,
    claim: str,
    source: str,
    kind: str,
    unit: str,
    quantity: str = "mean difference",
    setting: str = "",
    clusters: Sequence | None = None,
    at_chance: bool = False,
    note: str = "",
) -> dict:
    """Judge a claim on the mean of per-unit values.

    Parameters
    ----------
    values : sequence of float, shape (n,)
        One value per unit, in the claim's units (e.g. a seed's paired KD − No-KD accuracy in
        points). NaNs are dropped.
    prediction : {"> 0", "< 0", "= 0"}
        The predicted sign of the mean.
    sesoi : float
        The smallest effect of interest (> 0), in the claim's units.
    claim, source, kind, unit, quantity, setting : str
        The statement (see :class:`Claim`); ``setting`` names where it was measured.
    clusters : sequence, shape (n,), optional
        Rows that share a label are one unit: they are averaged before the test (e.g. a→b and
        b→a of an unordered pair).
    at_chance : bool
        The compared models ended at chance: the row is "not resolved" whatever its interval.
    note : str
        A note kept in the row (prefixed when ``at_chance``).

    Returns
    -------
    dict
        The claim's row (:data:`COLUMNS`); its verdict treats it as a family of one until
        :func:`table` adjusts the family.
    """
    _check_statement(kind, prediction, sesoi)
    units = _unit_values(values, clusters)
    n = len(units)
    row = _row(claim, setting, source, kind, quantity, unit, prediction, sesoi, n, at_chance, note)
    if n == 0:
        return _finish(row)
    row["estimate"] = float(np.mean(units))
    if n < 2:
        return _finish(row)
    from scipy import stats

    spread = float(np.std(units, ddof=1))
    if spread == 0.0:
        # every unit agrees exactly: the interval is the point (scipy's t-test is undefined here)
        row.update(
            ci_low=row["estimate"], ci_high=row["estimate"], p_value=_degenerate_p(row["estimate"], prediction, sesoi)
        )
        row["resolvable"] = 0.0
        return _finish(row)
    test = stats.ttest_1samp(units, 0.0)
    interval = test.confidence_interval(CONFIDENCE)
    row.update(ci_low=float(interval.low), ci_high=float(interval.high))
    if prediction == "= 0":
        from statsmodels.stats.weightstats import DescrStatsW

        row["p_value"] = float(DescrStatsW(units).ttost_mean(-sesoi, sesoi)[0])
    else:
        alternative = "greater" if prediction == "> 0" else "less"
        row["p_value"] = float(stats.ttest_1samp(units, 0.0, alternative=alternative).pvalue)
    row["resolvable"] = _resolvable_mean(n, spread)
    row = _finish(row)
    if row["verdict"] == "not resolved" and not row["note"]:
        row["note"] = _seeds_needed_note(spread, sesoi, unit)
    return row


def judge_correlation(
    x: Sequence[float],
    y: Sequence[float],
    prediction: str,
    sesoi: float,
    *,
    claim: str,
    source: str,
    kind: str,
    unit: str = "Spearman ρ",
    quantity: str = "rank correlation",
    setting: str = "",
    clusters: Sequence | None = None,
    strata: Sequence | None = None,
    n_boot: int = N_BOOT,
    seed: int = 0,
    at_chance: bool = False,
    note: str = "",
) -> dict:
    """Judge a claim on the Spearman correlation of ``x`` and ``y`` over units.

    Parameters
    ----------
    x, y : sequence of float, shape (n,)
        The two quantities, one pair per row; rows with a NaN are dropped.
    prediction : {"> 0", "< 0", "= 0"}
        The predicted sign of the correlation.
    sesoi : float
        The smallest correlation of interest (> 0).
    claim, source, kind, unit, quantity, setting : str
        The statement (see :class:`Claim`).
    clusters : sequence, shape (n,), optional
        Rows that share a label are one unit and are resampled together (a cluster bootstrap:
        e.g. a→b and b→a of one unordered pair, or one seed's rows at every setting).
        Without it every row is a unit.
    strata : sequence, shape (n,), optional
        A knob that drives both quantities (γ, α...): the estimate is the mean of the
        correlations within each stratum (weighted by its rows), so the knob cannot make it.
    n_boot, seed : int
        Bootstrap resamples and the seed of their generator.
    at_chance : bool
        Models behind the quantities ended at chance: the row is "not resolved".
    note : str
        A note kept in the row.

    Returns
    -------
    dict
        The claim's row. ``n_units`` counts clusters. The interval is scipy's percentile
        bootstrap over units; the p-value is the share of bootstrap replicates on the other side
        of 0 than predicted (for ``= 0``, the larger of the two one-sided shares beyond ±sesoi).
    """
    from scipy import stats

    _check_statement(kind, prediction, sesoi)
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-D and of one length; got shapes {x.shape} and {y.shape}")
    keep = ~(np.isnan(x) | np.isnan(y))
    labels = np.asarray(clusters if clusters is not None else np.arange(len(x)), dtype=object)[keep]
    levels = np.asarray(strata if strata is not None else np.zeros(len(x)), dtype=object)[keep]
    levels = np.unique(levels.astype(str), return_inverse=True)[1]  # integer codes: fast to compare
    x, y = x[keep], y[keep]
    unit_ids, row_unit = np.unique(labels.astype(str), return_inverse=True)
    n = len(unit_ids)
    row = _row(claim, setting, source, kind, quantity, unit, prediction, sesoi, n, at_chance, note)
    if n == 0:
        return _finish(row)

    def resampled_statistic(chosen_units, axis=-1):
        # a resample with no spread in any stratum (one unit drawn again and again) carries no
        # rank information: it counts as no correlation, rather than voiding the whole interval
        values = _resampled_stratified_spearman(x, y, levels, row_unit, chosen_units)
        return np.where(np.isfinite(values), values, 0.0)

    row["estimate"] = _stratified_spearman(x, y, levels)
    if n < 4 or not np.isfinite(row["estimate"]):
        if not row["note"] or row["note"] == f"{_units(n)}: no interval":
            row["note"] = f"{_units(n)}: a correlation's interval needs at least 4"
        return _finish(row)
    result = stats.bootstrap(
        (np.arange(n),),
        resampled_statistic,
        n_resamples=n_boot,
        vectorized=True,
        method="percentile",
        confidence_level=CONFIDENCE,
        rng=np.random.default_rng(seed),
    )
    replicates = np.asarray(result.bootstrap_distribution, dtype=float)
    row.update(ci_low=float(result.confidence_interval.low), ci_high=float(result.confidence_interval.high))
    row["p_value"] = _bootstrap_p(replicates, prediction, sesoi)
    row["resolvable"] = _resolvable_correlation(n)
    return _finish(row)


def table(rows: Sequence[dict]) -> pd.DataFrame:
    """The claims of one notebook, Holm-adjusted within each kind, each with its verdict.

    Parameters
    ----------
    rows : sequence of dict
        Rows from :func:`judge` / :func:`judge_correlation` (or a previous ``table``'s records).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`COLUMNS`, one row per claim, in the order given.
    """
    from statsmodels.stats.multitest import multipletests

    frame = pd.DataFrame(list(rows), columns=list(COLUMNS))
    if frame.empty:
        return frame
    frame["p_adjusted"] = np.nan
    for kind in KINDS:
        family = frame.index[(frame["kind"] == kind) & frame["p_value"].notna()]
        if len(family):
            with _objects_frozen():  # statsmodels' Holm calls gc.collect(): 0.2–0.3 s over a notebook's objects
                adjusted = multipletests(frame.loc[family, "p_value"].to_numpy(float), alpha=ALPHA, method="holm")[1]
            frame.loc[family, "p_adjusted"] = adjusted
    frame["verdict"] = [verdict_of(row) for row in frame.to_dict("records")]
    decided = (frame["verdict"] != "not resolved") & frame["note"].astype(str).str.startswith("~")
    frame.loc[decided, "note"] = ""  # "~N units would resolve..." speaks only to unresolved claims
    return frame


@contextlib.contextmanager
def _objects_frozen():
    """Every live object out of the garbage collector's sight for the block (``gc.freeze``), so a
    ``gc.collect()`` inside it scans only what the block makes; left alone if a caller froze some."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def verdict_of(row: dict) -> str:
    """A row's verdict by :data:`RULE`, from its own interval, sesoi and ``p_adjusted`` (else
    ``p_value``): one of :data:`VERDICTS`."""
    if row.get("note", "").startswith(_AT_CHANCE) or any(_missing(row.get(k)) for k in ("ci_low", "ci_high")):
        return "not resolved"
    low, high, sesoi = float(row["ci_low"]), float(row["ci_high"]), float(row["sesoi"])
    p = row.get("p_adjusted")
    p = row.get("p_value") if _missing(p) else p
    significant = not _missing(p) and float(p) < ALPHA
    negligible = -sesoi < low and high < sesoi
    prediction = row["prediction"]
    if prediction == "= 0":
        if negligible:
            return "held" if significant else "not resolved"
        return "not held" if (low > 0 or high < 0) else "not resolved"
    if prediction == "< 0":
        low, high = -high, -low
    if low > 0 and high >= sesoi and significant:
        return "held"
    if high < 0 or negligible:
        return "not held"
    return "not resolved"


def chance_ceiling(n_classes):
    """The highest accuracy that still counts as chance: 1/K plus the engine's margin
    (:data:`~cmkd_lab.engine.trainer.CHANCE_ACCURACY_MARGIN`, the one the engine warns by).
    A comparison with a model at or below it is passed ``at_chance``.

    Parameters
    ----------
    n_classes : int or array_like of int
        K, one or many.

    Returns
    -------
    float or numpy.ndarray
        The ceiling as a fraction (not points): a number for a number, else shaped as
        ``n_classes``.
    """
    from ..engine.trainer import CHANCE_ACCURACY_MARGIN

    return 1 / np.asarray(n_classes, dtype=float) + CHANCE_ACCURACY_MARGIN


def counts(frame: pd.DataFrame, kind: str = "paper") -> dict[str, int]:
    """How many claims of ``kind`` got each verdict.

    Parameters
    ----------
    frame : pandas.DataFrame
        A :func:`table` (or :func:`load`) output.
    kind : {"paper", "finding", "check"}

    Returns
    -------
    dict of str to int
        Per verdict in :data:`VERDICTS` (zeros included), the number of claims.
    """
    of_kind = frame[frame["kind"] == kind]["verdict"].value_counts()
    return {name: int(of_kind.get(name, 0)) for name in VERDICTS}


def readable(frame: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    """The table as a reader sees it: the interval as one cell, numbers rounded.

    Parameters
    ----------
    frame : pandas.DataFrame
        A :func:`table` (or :func:`load`) output.
    digits : int
        Decimals of the estimate and interval (significant digits of ``resolvable``).

    Returns
    -------
    pandas.DataFrame
        Columns claim, setting (dropped when every row's is empty), kind, source, prediction,
        sesoi, unit, "estimate [95% CI]", n, "p (Holm)", resolvable, verdict, note; all text.
    """

    def number(value):
        return "" if _missing(value) else f"{value:+.{digits}f}"

    shown = frame[["claim", "setting", "kind", "source", "prediction", "sesoi", "unit"]].copy()
    shown["estimate [95% CI]"] = [
        f"{number(e)} [{number(lo)}, {number(hi)}]" if not _missing(lo) else number(e)
        for e, lo, hi in zip(frame["estimate"], frame["ci_low"], frame["ci_high"])
    ]
    shown["n"] = frame["n_units"]
    shown["p (Holm)"] = ["" if _missing(p) else f"{p:.3g}" for p in frame["p_adjusted"]]
    shown["resolvable"] = ["" if _missing(r) else f"{r:.{digits}g}" for r in frame["resolvable"]]
    shown["verdict"] = frame["verdict"]
    shown["note"] = frame["note"]
    if not shown["setting"].astype(bool).any():
        shown = shown.drop(columns="setting")
    return shown


def save(out_dir: str | Path, *frames: pd.DataFrame) -> Path:
    """Write a notebook's claims to ``claims.csv``, whole or not at all; the gallery reads it.

    Parameters
    ----------
    out_dir : str or Path
        The folder (made if missing).
    *frames : pandas.DataFrame
        One or more :func:`table` outputs, combined and re-adjusted as one family per kind.

    Returns
    -------
    Path
        The path of ``claims.csv``.
    """
    from ..app.io import atomic_path

    combined = table([record for frame in frames for record in frame.to_dict("records")])
    path = Path(out_dir) / "claims.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        combined.to_csv(temporary, index=False)
    return path


def load(path: str | Path) -> pd.DataFrame:
    """Read a ``claims.csv`` written by :func:`save`.

    Parameters
    ----------
    path : str or Path
        The file, or the folder that holds it.

    Returns
    -------
    pandas.DataFrame
        The table (columns :data:`COLUMNS`), empty notes and settings as "".

    Raises
    ------
    ValueError
        If a column of :data:`COLUMNS` is missing.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "claims.csv"
    frame = pd.read_csv(path, dtype={column: "string" for column in ("claim", "setting", "note", "verdict")})
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path} is not a claims table of this kit: missing columns {missing}; rerun its notebook")
    for column in ("note", "setting"):
        frame[column] = frame[column].fillna("").astype(str)
    return frame


# ----------------------------------------------------------------------------- internals
_AT_CHANCE = "models ended at chance"


def _check_statement(kind: str, prediction: str, sesoi: float) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown claim kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    if prediction not in PREDICTIONS:
        raise ValueError(f"unknown prediction {prediction!r}; valid predictions: {', '.join(map(repr, PREDICTIONS))}")
    if not (isinstance(sesoi, (int, float)) and math.isfinite(sesoi) and sesoi > 0):
        raise ValueError(f"sesoi must be a positive number in the claim's units; got {sesoi!r}")


def _row(claim, setting, source, kind, quantity, unit, prediction, sesoi, n, at_chance, note) -> dict:
    row = dict.fromkeys(COLUMNS, np.nan)
    row.update(
        claim=claim,
        setting=setting,
        source=source,
        kind=kind,
        quantity=quantity,
        unit=unit,
        prediction=prediction,
        sesoi=float(sesoi),
        n_units=int(n),
        verdict=None,
        note=f"{_AT_CHANCE}: {note}" if at_chance and note else (_AT_CHANCE if at_chance else note),
    )
    if n < 2 and not at_chance and not note:
        row["note"] = f"{_units(n)}: no interval"
    return row


def _units(n: int) -> str:
    return f"{n} unit" if n == 1 else f"{n} units"


def _finish(row: dict) -> dict:
    row["p_adjusted"] = row["p_value"]
    row["verdict"] = verdict_of(row)
    return row


def _unit_values(values, clusters) -> np.ndarray:
    values = np.asarray(values, dtype=float).ravel()
    if clusters is None:
        return values[~np.isnan(values)]
    clusters = np.asarray(clusters, dtype=object).ravel()
    if clusters.shape != values.shape:
        raise ValueError(
            f"clusters must label every value: got {clusters.shape[0]} labels for {values.shape[0]} values"
        )
    frame = pd.DataFrame({"cluster": clusters.astype(str), "value": values}).dropna()
    return frame.groupby("cluster", sort=False)["value"].mean().to_numpy()


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _degenerate_p(estimate: float, prediction: str, sesoi: float) -> float:
    if prediction == "= 0":
        return 0.0 if abs(estimate) < sesoi else 1.0
    sign = 1.0 if prediction == "> 0" else -1.0
    return 0.0 if sign * estimate > 0 else 1.0


def _resolvable_mean(n: int, spread: float) -> float:
    """The smallest true mean the run detects with POWER at ALPHA (two-sided), in the units."""
    return _resolvable_effect_size(n) * spread


@functools.cache
def _resolvable_effect_size(n: int) -> float:
    """The standardised effect (Cohen's d) a two-sided one-sample t-test detects with POWER over n units."""
    from statsmodels.stats.power import TTestPower

    effect = TTestPower().solve_power(effect_size=None, nobs=n, alpha=ALPHA, power=POWER, alternative="two-sided")
    return float(np.ravel(effect)[0])


def _seeds_needed_note(spread: float, sesoi: float, unit: str) -> str:
    """How many units would resolve an effect of sesoi (for "= 0", a rough guide to TOST too)."""
    target = sesoi / spread
    if _resolvable_effect_size(MAX_UNITS_SEARCHED) > target:
        return f"more than {MAX_UNITS_SEARCHED} units would be needed to resolve {sesoi:g} {unit}"
    low, high = 2, MAX_UNITS_SEARCHED  # the resolvable effect falls with n: bisect on it
    while low < high:
        middle = (low + high) // 2
        low, high = (middle + 1, high) if _resolvable_effect_size(middle) > target else (low, middle)
    return f"~{low} units would resolve {sesoi:g} {unit}"


def _resolvable_correlation(n: int) -> float:
    """The smallest |ρ| a two-sided Fisher-z test detects with POWER at ALPHA over n units."""
    from scipy.stats import norm

    if n <= 3:
        return float("nan")
    return float(math.tanh((norm.ppf(1 - ALPHA / 2) + norm.ppf(POWER)) / math.sqrt(n - 3)))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """``scipy.stats.rankdata(values)``: ties share their mean rank. The same numbers (every rank is
    an exact half-integer), without scipy's per-call checks, which cost most of a bootstrap."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    first = np.empty(len(values), dtype=bool)
    first[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    dense = np.cumsum(first)
    ends = np.append(np.flatnonzero(first), len(values))
    ranks = np.empty(len(values))
    ranks[order] = 0.5 * (ends[dense] + ends[dense - 1] + 1)
    return ranks


def _stratified_spearman(x: np.ndarray, y: np.ndarray, levels: np.ndarray) -> float:
    """Spearman's ρ within each stratum (Pearson's r of the ranks, as scipy.stats.spearmanr computes
    it), averaged by rows. The bootstrap evaluates it thousands of times, so it is written out: the
    ranks are exact half-integers, so their centred sums are exact, and the rest repeats
    ``np.corrcoef``'s operations (covariance times 1/(n − 1), divided by each standard deviation in
    turn, clipped to [−1, 1]): the same numbers, 3–6× faster."""
    order = np.argsort(levels, kind="stable")
    sorted_levels = levels[order]
    starts = np.flatnonzero(np.r_[True, sorted_levels[1:] != sorted_levels[:-1]])
    correlations, weights = [], []
    for start, end in zip(starts, np.r_[starts[1:], len(order)]):
        rows, n = order[start:end], end - start
        inside_x, inside_y = x[rows], y[rows]
        if n < 3 or np.ptp(inside_x) == 0 or np.ptp(inside_y) == 0:
            continue
        centred_x = _average_ranks(inside_x) - (n + 1) / 2  # the mean rank, exactly
        centred_y = _average_ranks(inside_y) - (n + 1) / 2
        scale = 1.0 / (n - 1.0)
        sd_x = np.sqrt(np.dot(centred_x, centred_x) * scale)
        sd_y = np.sqrt(np.dot(centred_y, centred_y) * scale)
        correlations.append(min(max(np.dot(centred_x, centred_y) * scale / sd_x / sd_y, -1.0), 1.0))
        weights.append(n)
    return float(np.average(correlations, weights=weights)) if correlations else float("nan")


def _resampled_stratified_spearman(
    x: np.ndarray, y: np.ndarray, levels: np.ndarray, row_unit: np.ndarray, resamples: np.ndarray
) -> np.ndarray:
    """:func:`_stratified_spearman` of every bootstrap resample at once: ``resamples`` (B, n) holds
    unit indices, and a resample holds each row of unit u as many times as it drew u. Per stratum,
    each row's average rank in each resample follows from how often each value was drawn, so the
    centred ranks and their sums are exact as before, and the rest repeats the same operations:
    the same numbers as one call per resample (``tests/test_claims.py``), several times faster."""
    resamples = np.asarray(resamples).astype(np.intp)
    chunk = max(1, 2**20 // max(len(x), 1))  # resamples at a time: (chunk, rows) arrays of a few MB
    if len(resamples) > chunk:
        return np.concatenate(
            [
                _resampled_stratified_spearman(x, y, levels, row_unit, resamples[start : start + chunk])
                for start in range(0, len(resamples), chunk)
            ]
        )
    n_resamples, n_units = resamples.shape
    drawn = (resamples + n_units * np.arange(n_resamples)[:, None]).ravel()
    unit_counts = np.bincount(drawn, minlength=n_resamples * n_units).reshape(n_resamples, n_units).astype(float)
    order = np.argsort(levels, kind="stable")
    sorted_levels = levels[order]
    starts = np.flatnonzero(np.r_[True, sorted_levels[1:] != sorted_levels[:-1]])
    correlations, weights = [], []
    for start, end in zip(starts, np.r_[starts[1:], len(order)]):
        rows = order[start:end]
        counts = unit_counts[:, row_unit[rows]]  # (B, rows): how often each row is in each resample
        total = counts.sum(axis=1)
        centred_x, varies_x = _resampled_centred_ranks(x[rows], counts, total)
        centred_y, varies_y = _resampled_centred_ranks(y[rows], counts, total)
        with np.errstate(divide="ignore", invalid="ignore"):  # strata left out below
            scale = 1.0 / (total - 1.0)
            sd_x = np.sqrt((counts * centred_x * centred_x).sum(axis=1) * scale)
            sd_y = np.sqrt((counts * centred_y * centred_y).sum(axis=1) * scale)
            rho = np.clip((counts * centred_x * centred_y).sum(axis=1) * scale / sd_x / sd_y, -1.0, 1.0)
        correlations.append(np.where((total >= 3) & varies_x & varies_y, rho, np.nan))
        weights.append(total)
    correlations, weights = np.array(correlations).T, np.array(weights).T
    averaged = np.full(n_resamples, np.nan)
    for b, (values, counts) in enumerate(zip(correlations, weights)):
        kept = ~np.isnan(values)
        if kept.any():
            averaged[b] = np.average(values[kept], weights=counts[kept])
    return averaged


def _resampled_centred_ranks(
    values: np.ndarray, counts: np.ndarray, total: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's average rank minus the mean rank in every resample (``counts`` (B, rows): how
    often each row is drawn, ``total``: the resample's rows), and whether the resample holds two
    distinct values. Ranks are exact half-integers, as :func:`_average_ranks` gives them."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    first = np.r_[True, ordered[1:] != ordered[:-1]]
    value_of = np.cumsum(first) - 1  # each sorted row's distinct value
    per_value = np.add.reduceat(counts[:, order], np.flatnonzero(first), axis=1)  # (B, distinct values)
    below = np.cumsum(per_value, axis=1) - per_value
    ranks = np.empty_like(counts)
    ranks[:, order] = below[:, value_of] + (per_value[:, value_of] + 1) / 2
    return ranks - (total[:, None] + 1) / 2, (per_value > 0).sum(axis=1) >= 2


def _bootstrap_p(replicates: np.ndarray, prediction: str, sesoi: float) -> float:
    total = len(replicates) + 1
    if prediction == "> 0":
        return float((np.sum(replicates <= 0) + 1) / total)
    if prediction == "< 0":
        return float((np.sum(replicates >= 0) + 1) / total)
    return float(max(np.sum(replicates <= -sesoi) + 1, np.sum(replicates >= sesoi) + 1) / total)
