"""The registry of folder readers: each format module (vision, faces) registers its readers here with
`@register(name, layout)`; `load_registered` searches the usual folders with them. This module imports no
reader, so no reader's import runs back to it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from anpyc_core.data.idx import DataError
from anpyc_core.data.raw import RawDataset, candidate_dirs

Reader = Callable[[Path], "RawDataset | None"]
#: benchmark name → its reader (None: nothing of it in that folder; DataError: something there is wrong).
READERS: dict[str, Reader] = {}
#: What to put where, per benchmark (the one-line error repeats it).
LAYOUTS: dict[str, str] = {}


def register(name: str, layout: str) -> Callable[[Reader], Reader]:
    """Decorator: register `reader` for benchmark `name`, whose files are laid out as `layout`."""

    def add(reader: Reader) -> Reader:
        if name in READERS and READERS[name] is not reader:
            raise ValueError(f"a reader for {name!r} is already registered")
        READERS[name], LAYOUTS[name] = reader, layout
        return reader

    return add


def load_registered(name: str, data_dir: str | None = None) -> RawDataset:
    """Find and read `name` in the usual folders; one line listing every folder tried when it is absent."""
    tried = []
    for folder in candidate_dirs(name, data_dir):
        try:
            found = READERS[name](folder)
        except DataError:
            raise
        except Exception as err:  # noqa: BLE001 - a torn pickle, a bad .mat, a short binary
            detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise DataError(f"{folder}: {name} files are corrupt or truncated ({detail[:200]})") from None
        if found is not None:
            return found
        tried.append(str(folder))
    raise DataError(
        f"{name}: not found; tried {'; '.join(tried)}. Put {LAYOUTS[name]} in $ANPYC_DATA_DIR/{name} "
        f"or set data.data_dir (no download: {name} is not fetched by this tool)"
    )
