"""Turn ``--data`` arguments into local TSV files.

This module owns the catalog of GMAI-MMBench files the reference toolkit (VLMEvalKit) knows by name,
where they live on disk (``default_data_dir``), fetching them from the Hugging Face Hub when absent,
and md5 verification with a small ``<name>.tsv.md5ok`` stamp so a verified 9 GB file is not re-hashed
on every run. It does not read the TSVs: that is the reader's job.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.resources
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from gmai_client.errors import ConfigError, DataError, MissingExtra

log = logging.getLogger(__name__)

SAMPLE = "sample"
MD5_CHUNK = 8 << 20  # 8 MB: large enough to keep hashing disk-bound, small enough to keep memory flat
STAMP_SUFFIX = ".md5ok"
_DEFAULT_ENDPOINT = "https://huggingface.co"


@dataclass(frozen=True)
class SplitFile:
    """One file of a named split: its own name (usable alone as ``--data``), where it is hosted, its md5."""

    name: str
    repo_id: str
    filename: str
    md5: str


# A catalog maps every name a user may pass to the files it stands for, in run order.
Catalog = Mapping[str, tuple[SplitFile, ...]]

# Checksums as published by VLMEvalKit (vlmeval/dataset/image_mcq.py), so results stay comparable.
_VAL = SplitFile("GMAI-MMBench_VAL", "VLMEval/GMAI-MMBench", "GMAI-MMBench_VAL.tsv", "254bd581627866f1c499d3d6b4422324")
_TEST_MD5 = (
    "900d735231230a63f4ed45665c078ef4",
    "1b27ab621386945d7e4a765ad2d22b0e",
    "44bdc2b6267dd505d529b8cad06f0fb2",
    "5a04a04fcac9f1466709f242fdb80acb",
    "c70baf8909eda9af0ddeab275c721336",
    "825abc39596b644dead9350d0cfa3b96",
    "defb8aed2fb77365a76b6b9abd6a2701",
    "ff490d60b85f2bb0abb67a435b298c65",
    "ff67c86f40da93b09139ac1d1ba5dc6b",
    "3dae94627b9ac0fe00180d4780fbf6dc",
    "d08dc813f0eb6bbab63cae2a9d113c4b",
)
_TEST_PARTS = tuple(
    SplitFile(f"GMAI_mm_bench_TEST_part_{n}", "OpenGVLab/GMAI-MMBench", f"GMAI_mm_bench_TEST_part_{n}.tsv", md5)
    for n, md5 in enumerate(_TEST_MD5, start=1)
)

DEFAULT_CATALOG: Catalog = MappingProxyType(
    {
        _VAL.name: (_VAL,),
        "GMAI-MMBench_TEST": _TEST_PARTS,
        **{part.name: (part,) for part in _TEST_PARTS},
    }
)


def default_data_dir() -> Path:
    """Where named splits are kept: ``$GMAI_DATA_DIR``, else the per-user data directory."""
    if env := os.environ.get("GMAI_DATA_DIR"):
        return Path(env).expanduser()
    try:
        import platformdirs
    except ImportError:
        # The XDG rule platformdirs applies on Linux, for installs without it.
        base = os.environ.get("XDG_DATA_HOME") or "~/.local/share"
        return Path(base).expanduser() / "gmai_client"
    return Path(platformdirs.user_data_dir("gmai_client", appauthor=False))


def sample_path() -> Path:
    """The small TSV bundled with the package, for trying the client without the benchmark."""
    return Path(str(importlib.resources.files("gmai_client") / "data" / "sample.tsv"))


def file_md5(path: Path, chunk_size: int = MD5_CHUNK) -> str:
    """md5 of a file, read in chunks so multi-GB TSVs never sit in memory."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def resolve_data(
    specs: Sequence[str],
    *,
    data_dir: Path | None = None,
    download: bool = True,
    verify: bool = False,
    catalog: Catalog | None = None,
) -> list[Path]:
    """Resolve ``--data`` values to local TSV paths, in order, each path once.

    A spec is ``sample``, an existing file, an existing directory (its ``*.tsv`` in natural order) or a
    catalog name, looked up under ``data_dir`` (default: ``default_data_dir()``). Missing catalog files are
    downloaded when ``download`` is true. md5s are checked after every download, and for files already
    on disk only when ``verify`` is true (hashing the 9 GB test set on each run would dominate start-up).
    """
    if not specs:
        raise ConfigError("no --data given: " + _accepted_forms(catalog or DEFAULT_CATALOG))
    catalog = DEFAULT_CATALOG if catalog is None else catalog
    data_dir = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()

    out: list[Path] = []
    seen: set[Path] = set()
    for spec in specs:
        for path in _resolve_one(spec, data_dir=data_dir, download=download, verify=verify, catalog=catalog):
            key = path.resolve()
            if key not in seen:  # "VAL VAL" or a part listed next to TEST would evaluate rows twice
                seen.add(key)
                out.append(path)
    return out


def _resolve_one(spec: str, *, data_dir: Path, download: bool, verify: bool, catalog: Catalog) -> list[Path]:
    if spec == SAMPLE:
        path = sample_path()
        if not path.is_file():
            raise ConfigError(f"the bundled sample {path} is missing; reinstall gmai-client")
        return [path]

    # Paths win over names: a user who has a file or folder by that name means it.
    path = Path(spec).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        return _tsvs_in(path)

    if spec in catalog:
        return [_ensure_local(entry, data_dir, download=download, verify=verify) for entry in catalog[spec]]

    if os.sep in spec or "/" in spec or path.suffix:
        raise ConfigError(f"--data {spec!r}: no such file or directory. " + _accepted_forms(catalog))
    close = difflib.get_close_matches(spec, [SAMPLE, *catalog], n=3, cutoff=0.6)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise ConfigError(f"--data {spec!r} is not a file, a directory or a known split.{hint} " + _accepted_forms(catalog))


def _accepted_forms(catalog: Catalog) -> str:
    return (
        f"Accepted: {SAMPLE!r} (bundled sample), a .tsv file, a directory of .tsv files, "
        f"or a split name: {', '.join(catalog)}."
    )


def _natural_key(path: Path) -> tuple[tuple[str | int, ...], str]:
    # re.split with a capture group alternates text (even indices) and digit runs (odd indices), so
    # element types line up between names and "part_2" sorts before "part_10".
    chunks = re.split(r"(\d+)", path.name)
    return tuple(int(c) if i % 2 else c.lower() for i, c in enumerate(chunks)), path.name


def _tsvs_in(directory: Path) -> list[Path]:
    # Dot-files are skipped: macOS "._x.tsv" resource forks and editor temp files are not data.
    files = [
        p for p in directory.iterdir() if p.suffix.lower() == ".tsv" and not p.name.startswith(".") and p.is_file()
    ]
    if not files:
        raise ConfigError(f"directory {directory} contains no .tsv files")
    return sorted(files, key=_natural_key)


# ---------------------------------------------------------------- catalog files: stamp, verify, fetch


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + STAMP_SUFFIX)


def _write_stamp(path: Path, md5: str) -> None:
    st = path.stat()
    _stamp_path(path).write_text(f"{md5} {st.st_size} {st.st_mtime_ns}\n", encoding="utf-8")


def _stamp_vouches(path: Path, md5: str) -> bool:
    """True if the stamp says this exact file (same size and mtime) was hashed to ``md5``."""
    try:
        fields = _stamp_path(path).read_text(encoding="utf-8").split()
        st = path.stat()
    except OSError:
        return False
    return fields == [md5, str(st.st_size), str(st.st_mtime_ns)]


def _ensure_local(entry: SplitFile, data_dir: Path, *, download: bool, verify: bool) -> Path:
    path = data_dir / entry.filename
    if path.is_file():
        if not verify or _stamp_vouches(path, entry.md5):
            return path
        actual = file_md5(path)
        if actual == entry.md5:
            _write_stamp(path, actual)
            return path
        _stamp_path(path).unlink(missing_ok=True)
        if not download:
            raise DataError(
                f"md5 mismatch: expected {entry.md5}, actual {actual}; delete the file to fetch it again",
                file=str(path),
            )
        log.warning("%s: md5 %s, expected %s; downloading it again", path, actual, entry.md5)
        _download(entry, path, force=True)
    else:
        if not download:
            raise ConfigError(_manual_hint(entry, path, f"{path} is missing and downloading is off"))
        _download(entry, path, force=False)

    actual = file_md5(path)
    if actual != entry.md5:
        # A wrong file must not stay where the next run would take it for the real one.
        path.unlink(missing_ok=True)
        raise DataError(f"downloaded file has md5 {actual}, expected {entry.md5}; it was deleted", file=str(path))
    _write_stamp(path, actual)
    return path


def _endpoint() -> str:
    # Read at call time, not from huggingface_hub.constants (frozen at its import), so HF_ENDPOINT set
    # after start-up, e.g. by a test or a wrapper, still takes effect.
    return (os.environ.get("HF_ENDPOINT") or _DEFAULT_ENDPOINT).rstrip("/")


def _url(entry: SplitFile) -> str:
    return f"{_endpoint()}/datasets/{entry.repo_id}/resolve/main/{entry.filename}"


def _manual_hint(entry: SplitFile, path: Path, reason: str) -> str:
    return f"{reason}. Download {_url(entry)} and save it as {path}"


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _download(entry: SplitFile, path: Path, *, force: bool) -> None:
    if _offline():
        raise ConfigError(_manual_hint(entry, path, "cannot download: HF_HUB_OFFLINE is set"))
    try:
        import huggingface_hub
    except ImportError as exc:
        raise MissingExtra("data", "hub", "huggingface_hub") from exc

    path.parent.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s to %s", _url(entry), path)
    try:
        huggingface_hub.hf_hub_download(
            repo_id=entry.repo_id,
            repo_type="dataset",
            filename=entry.filename,
            local_dir=path.parent,
            endpoint=_endpoint(),
            # With local_dir, the hub trusts its own metadata over our md5: force replaces a bad copy.
            force_download=force,
        )
    except Exception as exc:  # network, offline, auth or missing entry: all mean "fetch it yourself"
        raise ConfigError(_manual_hint(entry, path, f"download failed ({type(exc).__name__}: {exc})")) from exc
    if not path.is_file():
        raise ConfigError(_manual_hint(entry, path, "the download finished but the file is not there"))
