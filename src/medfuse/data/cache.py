"""A disk cache of prepared images: decode once, then read uint8 arrays from a memory map.

One cache holds ``(N, C, S, S)`` uint8 images for one list of image paths and one preparation (size,
channels, window, frame, resize), in ``<cache_dir>/<key>.images.npy`` with a ``(N,)`` state array
``<key>.state.npy`` (0: not yet decoded, 1: ready). The key is a hash of the paths, the preparation and
the manifest's size and modification time, so a changed manifest or config gets a fresh cache; an image
file edited in place behind an unchanged manifest is not noticed (call :meth:`ImageCache.clear`).

Each process (DataLoader workers included) opens the maps itself; writes go to distinct rows, and an
image's state is set only after its pixels are written, so a crash leaves at worst an entry to redo.
Decoding failures are not cached: a file fixed later is read again on the next run.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

__all__ = ["ImageCache", "cache_key"]

CACHE_VERSION = 1
READY = 1


def cache_key(paths: Sequence[str], preparation: Mapping[str, Any], manifest: str | Path | None = None) -> str:
    """Return a 20-hex-digit key for ``paths`` prepared by ``preparation`` (and the manifest's identity)."""
    digest = hashlib.sha256()
    ident: dict[str, Any] = {"version": CACHE_VERSION, "prep": dict(preparation)}
    if manifest is not None and Path(manifest).is_file():
        st = Path(manifest).stat()
        ident["manifest"] = [str(Path(manifest).resolve()), st.st_size, st.st_mtime_ns]
    digest.update(json.dumps(ident, sort_keys=True, default=str).encode())
    for p in paths:
        digest.update(p.encode("utf-8", "surrogatepass"))
        digest.update(b"\0")
    return digest.hexdigest()[:20]


class ImageCache:
    """uint8 images ``(N, C, S, S)`` in a memory-mapped ``.npy`` file, filled on first read."""

    def __init__(self, directory: str | Path, key: str, n: int, channels: int, size: int) -> None:
        self.directory = Path(directory)
        self.key = key
        self.shape = (int(n), int(channels), int(size), int(size))
        self.images_path = self.directory / f"{key}.images.npy"
        self.state_path = self.directory / f"{key}.state.npy"
        self._pid: int | None = None
        self._images: np.memmap | None = None
        self._state: np.memmap | None = None
        self.directory.mkdir(parents=True, exist_ok=True)
        self._create()

    def _create(self) -> None:
        """Create both files atomically when absent (or when an old file has another shape)."""
        for path, shape in ((self.images_path, self.shape), (self.state_path, (self.shape[0],))):
            if path.is_file():
                try:
                    existing = np.load(path, mmap_mode="r")
                    if existing.shape == shape and existing.dtype == np.uint8:
                        continue
                except (ValueError, OSError):
                    pass
            fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp.npy")
            os.close(fd)
            arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
            arr.flush()
            del arr
            os.replace(tmp, path)
            if path is self.images_path and self.state_path.is_file():
                self.state_path.unlink()  # pixels were reset: the old states no longer hold

    def _open(self) -> tuple[np.memmap, np.memmap]:
        pid = os.getpid()
        if self._pid != pid or self._images is None or self._state is None:
            self._images = cast(np.memmap, np.load(self.images_path, mmap_mode="r+"))
            self._state = cast(np.memmap, np.load(self.state_path, mmap_mode="r+"))
            self._pid = pid
        return self._images, self._state

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_pid=None, _images=None, _state=None)  # memory maps are reopened in each process
        return state

    def get(self, index: int) -> np.ndarray | None:
        """Return image ``index`` ``(C, S, S)`` uint8 (a copy), or None when it is not cached yet."""
        images, state = self._open()
        if state[index] != READY:
            return None
        return np.array(images[index])

    def put(self, index: int, image: np.ndarray) -> None:
        """Store image ``index`` ``(C, S, S)`` uint8, then mark it ready."""
        if image.shape != self.shape[1:] or image.dtype != np.uint8:
            raise ValueError(f"cache entry must be uint8 {self.shape[1:]}, got {image.dtype} {image.shape}")
        images, state = self._open()
        images[index] = image
        state[index] = READY

    @property
    def n_ready(self) -> int:
        """Number of images already cached."""
        return int((self._open()[1] == READY).sum())

    def flush(self) -> None:
        """Write pending pages to disk."""
        if self._images is not None and self._state is not None:
            self._images.flush()
            self._state.flush()

    def clear(self) -> None:
        """Delete the cache files (they are recreated empty)."""
        self._images = self._state = None
        self._pid = None
        for path in (self.images_path, self.state_path):
            path.unlink(missing_ok=True)
        self._create()

    def __repr__(self) -> str:
        return f"ImageCache({self.images_path}, shape={self.shape})"
