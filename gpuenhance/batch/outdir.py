"""The output folder of a run: checked before any work, locked while a run writes into it,
and cleared of the temporary files a killed run left there (only those).

Both file runners (:func:`gpuenhance.batch.runner.run_files` and :func:`gpuenhance.dask.run_files`)
go through :func:`check_output_folder` before any work and :func:`hold` around their writes.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

from filelock import FileLock, Timeout

from ..io import TEMP_NAME

__all__ = ["LOCK_NAME", "OutputFolderError", "check_output_folder", "hold", "remove_temp_files"]

#: The lock file a run holds in its output folder (an OS lock: released on exit and on a crash).
LOCK_NAME = ".gpuenhance.lock"


class OutputFolderError(OSError):
    """The output folder cannot be used: not creatable, not writable, an input folder, or held
    by another live run. The message names the folder and the reason."""


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_output_folder(out_dir, input_folders=()) -> Path:
    """Refuse an output folder that cannot be used, before anything is read or written.

    Parameters
    ----------
    out_dir : path
        The folder outputs go to (it need not exist yet).
    input_folders : iterable of path
        Folders given as inputs: writing into one of them would put outputs beside (and under
        the names of) the photos, so the folder is refused as a whole.

    Returns
    -------
    pathlib.Path
        *out_dir*.

    Raises
    ------
    OutputFolderError
        With a one-line reason naming the folder. Nothing is created.

    Examples
    --------
    >>> import tempfile
    >>> photos = tempfile.mkdtemp()
    >>> check_output_folder(photos, [photos])
    Traceback (most recent call last):
    ...
    gpuenhance.batch.outdir.OutputFolderError: output folder ... is the input folder ...
    """
    out_dir = Path(out_dir)
    resolved = out_dir.resolve()
    for folder in input_folders:
        if Path(folder).resolve() == resolved:
            raise OutputFolderError(
                f"output folder {str(out_dir)!r} is the input folder {str(folder)!r}; outputs "
                f"keep their input's name, so choose another folder"
            )
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputFolderError(f"output folder {str(out_dir)!r} exists and is not a folder")
    existing = _nearest_existing(resolved)
    if not existing.is_dir():
        raise OutputFolderError(
            f"output folder {str(out_dir)!r} cannot be created: {str(existing)!r} is not a folder"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputFolderError(
            f"output folder {str(out_dir)!r} is not writable ({str(existing)!r}: permission denied)"
        )
    return out_dir


def remove_temp_files(folders) -> int:
    """Delete gpuenhance's own temporary files (:data:`gpuenhance.io.TEMP_NAME`) directly in
    each of *folders* (not below them); return how many. Nothing else is ever removed."""
    removed = 0
    for folder in folders:
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            if TEMP_NAME.match(name):
                try:
                    os.unlink(os.path.join(folder, name))
                    removed += 1
                except FileNotFoundError:
                    pass
    return removed


@contextlib.contextmanager
def hold(out_dir, output_folders=()):
    """Create *out_dir*, lock it for this run and sweep the temporary files a killed run left
    in *output_folders* (the folders this run writes into); release the lock on exit.

    Raises
    ------
    OutputFolderError
        When the folder cannot be created or written, or another live run holds it.
    """
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        lock = FileLock(out_dir / LOCK_NAME, timeout=0)
        lock.acquire()
    except Timeout:
        raise OutputFolderError(
            f"output folder {str(out_dir)!r} is in use by another gpuenhance run (it holds "
            f"{str(out_dir / LOCK_NAME)!r}); wait for it to finish or choose another folder"
        ) from None
    except OSError as exc:
        reason = exc.strerror or os.strerror(exc.errno or errno.EIO)
        raise OutputFolderError(
            f"cannot write into output folder {str(out_dir)!r}: {reason}"
        ) from None
    try:
        remove_temp_files({out_dir, *output_folders})
        yield out_dir
    finally:
        lock.release()
