"""Fetching and converting the datasets that no package ships.

A :class:`DownloadSpec` names a dataset's source files (URL, and the checksums known in
advance), its converter ``convert(raw_folder, **options) -> (arrays, meta)`` and the script that
runs it; each downloadable dataset's module registers its spec and loader with
:func:`register_download` (``DOWNLOADS`` holds the specs by name). :func:`run` is the whole
command line of ``python -m cmkd_lab datasets download NAME`` and of the scripts in
``data_scripts/``:

1. each source file is fetched into the raw folder with :func:`fetch`: resumable (an HTTP Range
   request continues a ``.part`` file), with a tqdm progress bar, verified against its sha256 (or
   the host's md5) and renamed into place only when complete. Where the kit does not know a
   file's checksum in advance, the sha256 of the first download is recorded in
   ``checksums.json`` beside it and later copies are held to it;
2. the converter turns the raw files into arrays, stored in the kit's cache format
   (:mod:`cmkd_lab.datasets.cache`), so ``cmkd_lab.datasets.load(name)`` works offline.

A network failure ends the script with a one-line message (no traceback) that says how to resume.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import inspect
import json
import os
import shutil
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..engine.registry import Registry
from . import cache

CHUNK_BYTES = 1 << 20
USER_AGENT = "cmkd_lab-data-scripts"


class DownloadError(cache.DataError):
    """A file could not be downloaded; partial data is kept for the next run to resume."""


class ChecksumError(DownloadError):
    """A downloaded or supplied file does not match its expected checksum."""


@dataclass(frozen=True)
class Source:
    """One file to download. ``sha256=None`` means the kit does not know it in advance."""

    filename: str
    url: str
    sha256: str | None = None
    md5: str | None = None  # the host's published md5, where it publishes no sha256
    size: int | None = None


@dataclass(frozen=True)
class DownloadSpec:
    name: str  # the registered dataset name
    script: str  # the command that creates it, e.g. "python data_scripts/get_avmnist.py"
    description: str
    sources: tuple[Source, ...]
    convert: Callable[..., tuple[dict, dict]]  # convert(raw_folder, **options) -> (arrays, meta)
    version: int = 1  # bump when convert changes, so existing conversions are redone
    # which source filenames the given options need (default: all)
    needs: Callable[[dict[str, Any]], list[str]] | None = None
    notes: str = ""
    option_help: dict[str, str] = field(default_factory=dict)

    def options(self) -> dict[str, Any]:
        """The converter's keyword options and their defaults."""
        return {
            name: parameter.default
            for name, parameter in inspect.signature(self.convert).parameters.items()
            if parameter.kind is inspect.Parameter.KEYWORD_ONLY
        }

    def needed_sources(self, options: dict[str, Any]) -> list[Source]:
        if self.needs is None:
            return list(self.sources)
        wanted = set(self.needs(options))
        return [source for source in self.sources if source.filename in wanted]


DOWNLOADS: Registry[DownloadSpec] = Registry("downloadable dataset")


def register_download(spec: DownloadSpec, loader: Callable) -> None:
    """Register ``spec`` (for ``python -m cmkd_lab datasets download``) and its ``loader`` as dataset
    ``spec.name`` of kind "download": loadable once the spec has run, otherwise naming its script."""
    from . import register_dataset

    DOWNLOADS.register(spec.name)(spec)
    cache.set_create_command(spec.name, spec.script)
    register_dataset(
        spec.name, kind="download", description=spec.description, is_available=lambda: cache.is_prepared(spec.name)
    )(loader)


def raw_folder(name: str, root: Path | None = None) -> Path:
    return (root or cache.data_root()) / "raw" / name


# --- checksums ------------------------------------------------------------------------------

RECORD = "checksums.json"


def file_digests(path: Path) -> dict[str, str]:
    sha256, md5 = hashlib.sha256(), hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK_BYTES), b""):
            sha256.update(block)
            md5.update(block)
    return {"sha256": sha256.hexdigest(), "md5": md5.hexdigest()}


def recorded_checksums(folder: Path) -> dict[str, str]:
    try:
        return json.loads((folder / RECORD).read_text())
    except (OSError, ValueError):
        return {}


def record_checksum(folder: Path, filename: str, sha256: str) -> None:
    records = recorded_checksums(folder)
    records[filename] = sha256
    cache.atomic_write_bytes(folder / RECORD, json.dumps(records, indent=2, sort_keys=True).encode())


def check_file(path: Path, source: Source, log: Callable[[str], None] = print) -> str:
    """Verify ``path`` against ``source``'s known checksums (or the one recorded earlier); return its sha256."""
    folder = path.parent
    if source.size is not None and path.stat().st_size != source.size:
        raise ChecksumError(
            f"{path} has {path.stat().st_size:,} bytes, expected {source.size:,}; delete it and run the script again"
        )
    digests = file_digests(path)
    recorded = recorded_checksums(folder).get(source.filename)
    expected = [("sha256", source.sha256), ("md5", source.md5)]
    if source.sha256 is None and recorded:
        expected.append(("sha256", recorded))
    for kind, value in expected:
        if value is not None and digests[kind] != value:
            raise ChecksumError(
                f"{path} has {kind} {digests[kind]}, expected {value}: the file is damaged or not the "
                "published version. Delete it and run the script again."
            )
    if source.sha256 is None and not recorded:
        record_checksum(folder, source.filename, digests["sha256"])
        log(
            f"note: the kit knows no sha256 for {source.filename} in advance; recorded this download's "
            f"({digests['sha256']}) in {folder / RECORD}, later copies must match it"
        )
    return digests["sha256"]


# --- fetching -------------------------------------------------------------------------------


def fetch(
    source: Source,
    folder: Path,
    url: str | None = None,
    timeout: float = 30,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> Path:
    """Download ``source`` into ``folder`` (resuming a partial download) and verify it."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / source.filename
    if target.exists():
        check_file(target, source, log)
        return target
    url = url or source.url
    partial = folder / (source.filename + ".part")
    try:
        _download(url, partial, source.size, timeout, progress)
    except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError, OSError) as error:
        reason = getattr(error, "reason", None) or error
        kept = partial.stat().st_size if partial.exists() else 0
        raise DownloadError(
            f"could not download {source.filename} from {url} ({reason}). Check the network connection and "
            f"run the script again"
            + (f"; the {kept:,} bytes already fetched are kept and it will resume" if kept else "")
            + f". Or download the file by other means and put it at {target}."
        ) from None
    try:
        check_file(partial, source, log)
    except ChecksumError:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, target)
    return target


def _download(url: str, partial: Path, size: int | None, timeout: float, progress: bool) -> None:
    offset = partial.stat().st_size if partial.exists() else 0
    if size is not None and offset == size:
        return
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:  # nothing after offset: the partial file is complete
            return
        raise
    with response:
        if offset and response.status != 206:  # the server ignored the Range: start over
            offset = 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else size
        from tqdm import tqdm

        with (
            open(partial, "ab" if offset else "wb") as handle,
            tqdm(
                total=total,
                initial=offset,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=partial.name[: -len(".part")],
                disable=not progress,
                leave=False,
            ) as bar,
        ):
            while True:
                block = response.read(CHUNK_BYTES)
                if not block:
                    break
                handle.write(block)
                bar.update(len(block))
        if total is not None and partial.stat().st_size < total:
            raise ConnectionError(f"the connection closed after {partial.stat().st_size:,} of {total:,} bytes")


# --- the scripts' command line --------------------------------------------------------------


def _parser(spec: DownloadSpec, prog: str | None = None) -> argparse.ArgumentParser:
    sources = "\n".join(f"  {s.filename}  {s.url}" for s in spec.sources)
    parser = argparse.ArgumentParser(
        prog=prog or spec.script,
        description=f"Download and convert {spec.description} into the kit's data folder, so that "
        f"cmkd_lab.datasets.load({spec.name!r}) works offline.",
        epilog=f"sources:\n{sources}\n{spec.notes}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data-dir", type=Path, help=f"data folder (default: ${cache.ENV_VAR} or the user cache)")
    parser.add_argument(
        "--raw-dir", type=Path, help="where the downloaded files go (default: <data folder>/raw/<name>)"
    )
    parser.add_argument("--mirror", help="download each file from MIRROR/<filename> instead of its usual URL")
    parser.add_argument("--force", action="store_true", help="convert again even if the converted data verifies")
    parser.add_argument("--delete-raw", action="store_true", help="delete the downloaded files after converting")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    for option, default in spec.options().items():
        flag = "--" + option.replace("_", "-")
        kind = type(default)
        help_text = spec.option_help.get(option, "") + f" (default: {default})"
        if kind is bool:
            parser.add_argument(
                flag, dest=option, default=default, action=argparse.BooleanOptionalAction, help=help_text
            )
        else:
            parser.add_argument(flag, dest=option, default=default, type=kind, help=help_text)
    return parser


def run(spec: DownloadSpec, argv: list[str] | None = None, prog: str | None = None) -> int:
    """The command line of a data script: download, verify, convert. Returns the exit status.
    ``argv`` defaults to the process's arguments; ``prog`` names the command in the help (default:
    the spec's script)."""
    args = _parser(spec, prog).parse_args(argv)
    root = args.data_dir or cache.data_root()
    options = {name: getattr(args, name) for name in spec.options()}
    log = print
    try:
        if not args.force and _is_current(spec, options, root):
            log(f"{spec.name}: already converted in {cache.dataset_dir(spec.name, root)} (use --force to redo it)")
            return 0
        raw = args.raw_dir or raw_folder(spec.name, root)
        checksums = {}
        for source in spec.needed_sources(options):
            url = args.mirror.rstrip("/") + "/" + source.filename if args.mirror else None
            log(f"{source.filename}: {'checking' if (raw / source.filename).exists() else 'downloading'}")
            path = fetch(source, raw, url=url, progress=not args.quiet, log=log)
            checksums[source.filename] = cache.sha256_file(path) if source.sha256 is None else source.sha256
        started = time.perf_counter()
        log(f"{spec.name}: converting …")
        arrays, meta = spec.convert(raw, **options)
        meta = {**meta, "options": options, "converter": spec.version, "source_sha256": checksums}
        folder = cache.write_arrays(spec.name, arrays, meta, root)
        log(f"{spec.name}: converted into {folder} ({time.perf_counter() - started:.0f} s)")
        if args.delete_raw:
            shutil.rmtree(raw)
            log(f"deleted {raw}")
    except (cache.DataError, ValueError) as error:  # ValueError: an option the converter refuses
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted; run the script again to resume the download", file=sys.stderr)
        return 130
    return 0


def _is_current(spec: DownloadSpec, options: dict[str, Any], root: Path) -> bool:
    if not cache.verify(spec.name, root):
        return False
    meta = cache.read_manifest(spec.name, root)["meta"]
    return meta.get("converter") == spec.version and meta.get("options") == options


__all__ = [
    "Source",
    "DownloadSpec",
    "DownloadError",
    "ChecksumError",
    "DOWNLOADS",
    "register_download",
    "fetch",
    "check_file",
    "run",
    "raw_folder",
]
