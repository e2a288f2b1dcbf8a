"""Sample photographs bundled with gpuenhance (public domain / CC0; see LICENSES.md).

Examples
--------
>>> from gpuenhance import samples
>>> [p.name for p in samples.sample_paths()]
['astronaut.jpg', 'chelsea.png', 'coffee.jpg', 'rocket.jpg']
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["sample_paths", "load"]

_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")


def sample_paths() -> list[Path]:
    """The bundled sample images as file-system paths, sorted by name.

    Returns
    -------
    list of pathlib.Path
        One path per image file in the ``gpuenhance.samples`` package.

    Examples
    --------
    >>> from gpuenhance.samples import sample_paths
    >>> len(sample_paths()) >= 3
    True
    """
    folder = resources.files(__name__)
    found = [
        Path(str(entry))
        for entry in folder.iterdir()
        if entry.is_file() and entry.name.lower().endswith(_EXTENSIONS)
    ]
    return sorted(found, key=lambda p: p.name)


def load(name: str):
    """Read one bundled sample by file name as an RGB ``uint8`` array.

    Parameters
    ----------
    name : str
        A file name from :func:`sample_paths`, e.g. ``"chelsea.png"``.

    Returns
    -------
    numpy.ndarray
        (H, W, 3) uint8, RGB.

    Raises
    ------
    ValueError
        When no sample has that name.

    Examples
    --------
    >>> from gpuenhance.samples import load
    >>> load("chelsea.png").shape
    (300, 451, 3)
    """
    from ..io import read_image

    for path in sample_paths():
        if path.name == name:
            return read_image(path)
    names = ", ".join(p.name for p in sample_paths())
    raise ValueError(f"name must be one of {names}; got {name!r}")
