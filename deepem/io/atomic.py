"""Write every output under a temporary name and rename it into place.

A job killed at any moment then leaves either the complete file or directory, or nothing
that a later rule could mistake for complete.
"""

import contextlib
import os
import shutil
from pathlib import Path

from deepem.errors import DeepEMError


def _temporary(path):
    return path.with_name(f".{path.name}.tmp{os.getpid()}{path.suffix}")


def _make_parent(path):
    """Make ``path``'s folder, or say which file stands where a folder of it must be."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocking = next(p for p in path.parents if p.exists() and not p.is_dir())
        raise DeepEMError(f"{path}: {blocking} is a file, where a folder is needed; give another output path") from None


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary file path beside ``path``; rename it to ``path`` only if the block succeeds.

    A folder at ``path`` is an error before anything is written: the rename would fail only after
    the other outputs of a command were in place.
    """
    path = Path(path)
    if path.is_dir():
        raise DeepEMError(f"{path}: a folder, where a file is to be written; give a file name")
    _make_parent(path)
    tmp = _temporary(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


MARKER = ".deepem-output"  # in every directory atomic_directory writes: the sign that it may replace it


def _check_replaceable(path):
    """Refuse to replace a directory deepem did not write: it replaces its output directories whole."""
    if Path.cwd().resolve().is_relative_to(path.resolve()):
        raise DeepEMError(f"{path}: deepem replaces its output directory whole; give one that is not the current directory")
    if path.is_symlink():
        raise DeepEMError(f"{path}: a symbolic link; give the directory it points to, or a new one")
    if path.exists() and not path.is_dir():
        raise DeepEMError(f"{path}: not a directory; give a new directory for the output")
    if path.is_dir() and not (path / MARKER).exists() and any(p.is_symlink() or not p.is_dir() for p in path.rglob("*")):
        raise DeepEMError(
            f"{path}: holds files that deepem did not write, and deepem replaces its output directory whole; "
            "give a new or empty directory (an output of an older deepem, which did not mark its outputs: remove it first)"
        )


@contextlib.contextmanager
def atomic_directory(path):
    """Yield a fresh temporary directory; it replaces ``path`` only if the block succeeds.

    ``path`` must be new, hold no file (Snakemake makes the folders of a rule's outputs before it
    runs) or be an earlier output of this function (it holds ``MARKER``), so that a mistyped output
    directory never deletes the user's files.
    """
    _check_replaceable(Path(path))
    path = Path(path).absolute()  # '.' has no name to put a temporary one beside
    _make_parent(path)
    for stale in path.parent.glob(f".{path.name}.tmp*"):  # left by a killed earlier attempt
        shutil.rmtree(stale, ignore_errors=True)
    tmp = _temporary(path)
    tmp.mkdir()
    try:
        yield tmp
        (tmp / MARKER).touch()
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_text(path, text):
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)
