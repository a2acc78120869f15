"""Retrieval indexes: FAISS (flat, IVF, HNSW) over a checkpoint's embeddings of a manifest's images or texts.

>>> info = build_index_from_manifest("runs/clip", "data/manifest.csv", "runs/index")   # doctest: +SKIP
>>> next(query_index("runs/index", text="right lower lobe consolidation", k=3))       # doctest: +SKIP

FAISS is optional (``pip install 'medfuse[index]'``) and imported when an index is built or read.
"""

from medfuse.index.build import build_index_from_manifest, check_compatible, query_index
from medfuse.index.embed import Embedder, ImagePreparer, open_checkpoint, resolve_checkpoint_dir
from medfuse.index.faiss_index import FaissIndex, Hit

__all__ = [
    "Embedder",
    "FaissIndex",
    "Hit",
    "ImagePreparer",
    "build_index_from_manifest",
    "check_compatible",
    "open_checkpoint",
    "query_index",
    "resolve_checkpoint_dir",
]
