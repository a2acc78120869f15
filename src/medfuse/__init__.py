"""medfuse: multimodal medical AI — align, fuse, adapt, evaluate and serve."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
