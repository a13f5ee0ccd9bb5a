"""Writing output files safely: never a half-written file, never a silent overwrite.

Every command that writes goes through ``atomic_write``:

* the data goes to a temporary file in the target's own directory, which is flushed,
  ``fsync``-ed and only then renamed over the target (``os.replace`` is atomic on
  POSIX and Windows), so a crash or a ``kill -9`` mid-write leaves the old file intact
  (at worst a stray ``.NAME.*.tmp`` beside it);
* an existing target is refused (``OutputFileError``, exit status 2 on the command
  line) unless ``force`` is given (``--force``);
* a target that is one of the command's own inputs is refused even with ``force``;
* a missing directory or an unwritable place is an ``OutputFileError``, not an
  ``OSError`` traceback.

>>> import os, tempfile
>>> d = tempfile.mkdtemp()
>>> path = os.path.join(d, "out.txt")
>>> with atomic_write(path) as tmp:
...     _ = open(tmp, "w").write("first")
>>> with atomic_write(path) as tmp:
...     _ = open(tmp, "w").write("second")
Traceback (most recent call last):
...
superpose.files.OutputFileError: --output: .../out.txt exists; pass --force to overwrite it
>>> open(path).read()
'first'
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Iterable, Iterator

from superpose.setting import SuperposeError


class OutputFileError(SuperposeError):
    """An output file cannot or must not be written (exists, is an input, bad directory)."""


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def check_output(path: str, force: bool = False, inputs: Iterable[str] = (), what: str = "--output") -> None:
    """Raise ``OutputFileError`` if ``atomic_write(path, force, inputs)`` would refuse.

    Commands call it before any expensive work, so a refusal comes at once.
    """
    path = os.fspath(path)
    for source in inputs:
        if source is not None and _same_file(path, os.fspath(source)):
            raise OutputFileError(f"{what}: {path} is also an input of this command; "
                                  "refusing to overwrite it (even with --force)")
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise OutputFileError(f"{what}: {path} is a directory")
    if not os.path.isdir(directory):
        raise OutputFileError(f"{what}: cannot write {path}: directory {directory} does not exist")
    if not force and os.path.lexists(path):
        raise OutputFileError(f"{what}: {path} exists; pass --force to overwrite it")


@contextlib.contextmanager
def atomic_write(path: str, force: bool = False, inputs: Iterable[str] = (),
                 what: str = "--output") -> Iterator[str]:
    """Context manager yielding a temporary path to write; on success it replaces ``path``.

    The temporary file lives in ``path``'s directory (so the rename cannot cross file
    systems) and gets the permissions a plain ``open(path, "w")`` would. On an
    exception inside the block it is removed and ``path`` is untouched.
    """
    path = os.fspath(path)
    inputs = list(inputs)
    check_output(path, force, inputs, what)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    except OSError as e:
        raise OutputFileError(f"{what}: cannot write {path}: {e.strerror or e}") from None
    os.close(fd)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        # re-check: the target may have appeared (or become an input) while we were writing
        check_output(path, force, inputs, what)
        os.replace(tmp, path)
    except OSError as e:
        raise OutputFileError(f"{what}: cannot write {path}: {e.strerror or e}") from None
    finally:
        if os.path.lexists(tmp):
            with contextlib.suppress(OSError):
                os.remove(tmp)


def check_outputs(directory: str, names: Iterable[str], force: bool = False, inputs: Iterable[str] = (),
                  what: str = "--out") -> None:
    """``check_output`` for each of ``names`` inside ``directory`` (which may not exist yet)."""
    inputs = list(inputs)
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise OutputFileError(f"{what}: {directory} exists and is not a directory")
    if not os.path.isdir(directory):
        parent = os.path.dirname(os.path.abspath(directory))
        if not os.path.isdir(parent):
            raise OutputFileError(f"{what}: cannot create {directory}: directory {parent} does not exist")
        return
    for name in names:
        check_output(os.path.join(directory, name), force, inputs, what)


def make_directory(directory: str, what: str = "--out") -> None:
    """``os.makedirs(directory, exist_ok=True)`` with an ``OutputFileError`` instead of ``OSError``."""
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as e:
        raise OutputFileError(f"{what}: cannot create {directory}: {e.strerror or e}") from None


__all__ = ["OutputFileError", "atomic_write", "check_output", "check_outputs", "make_directory"]
