"""Dense vector index (FAISS) for one collection, keyed by chunk id.

The SQL database is the source of truth; this index is derived from the vectors
stored there and can always be rebuilt from them. Vectors are L2-normalised, so
inner product equals cosine similarity.

On disk, a collection directory holds ``dense.<generation>.faiss`` files and
``dense.manifest.json``. A save writes a new index file, then the manifest
(each through a temporary file, fsync and ``os.replace``), so a reader sees
either the old or the new pair, never a mix. The manifest records the model,
dimension, metric, index kind, vector count, the index file's SHA-256 and a
generation counter that readers poll with :meth:`DenseIndex.reload_if_changed`.

Index kinds, chosen by name (``flat | hnsw | ivfpq | auto``):

* ``flat``: exact search (``IndexFlatIP``).
* ``hnsw``: graph search (``IndexHNSWFlat``, inner product).
* ``ivfpq``: ``IndexIVFPQ`` wrapped in ``IndexRefineFlat``; the top
  ``k * refine_factor`` candidates are re-scored exactly against the full vectors.
  It needs training data: built with fewer than ``max(2**pq_nbits, 39 * nlist)``
  vectors it falls back to ``flat``, and :attr:`DenseIndex.kind` and the manifest
  say ``flat``.
* ``auto``: ``flat`` below ``auto_flat_below`` vectors, ``hnsw`` below
  ``auto_hnsw_below``, ``ivfpq`` above; resolved when the index is (re)built.
  :attr:`DenseIndex.needs_rebuild` tells the caller when growth has made
  another kind the right one.

Every kind sits inside ``IndexIDMap2`` so FAISS labels are the chunk ids.

With a data cipher (``RAG_ENCRYPTION__KEY_FILE``), an index file holds the serialized index
encrypted with AES-256-GCM (:mod:`rag.security.crypto`), and the manifest says
``"encrypted": true``; such a file does not load without the key, and a plain file is refused
while encryption is on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import faiss
import numpy as np

from rag.config import DenseConfig
from rag.errors import ConfigError, IndexMismatchError, InputError, RagError
from rag.fileio import atomic_write, atomic_write_bytes
from rag.threads import faiss_threads_here
from rag.types import Hit

if TYPE_CHECKING:
    from rag.security.crypto import DataCipher

log = logging.getLogger(__name__)

METRIC = "inner_product"
MANIFEST_NAME = "dense.manifest.json"
FORMAT_VERSION = 1
KINDS = ("flat", "hnsw", "ivfpq", "auto")

# Allow-lists up to this size are scored exactly over their reconstructed vectors:
# graph and IVF search under a very selective filter can miss allowed ids.
EXACT_ALLOW_MAX = 1024
ENCRYPTION_SETTING = "RAG_ENCRYPTION__KEY_FILE"
# associated data of an encrypted index file: its bytes do not decrypt as any other field
_AAD = b"dense.faiss"
# IVF k-means wants at least this many training points per list (FAISS warns below).
MIN_POINTS_PER_LIST = 39


class IndexCorruptError(RagError):
    """The index file on disk does not match its manifest; rebuild it from the database.

    Args:
        path: the file at fault.
        reason: what did not match.
    """

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        super().__init__(f"{path}: {reason}")


@dataclass(frozen=True)
class _Built:
    """An inner (un-mapped) FAISS index and the kind it actually is."""

    index: faiss.Index
    kind: str


def _build_flat(dim: int, config: DenseConfig, train: np.ndarray) -> _Built:
    return _Built(faiss.IndexFlatIP(dim), "flat")


def _build_hnsw(dim: int, config: DenseConfig, train: np.ndarray) -> _Built:
    index = faiss.IndexHNSWFlat(dim, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = config.hnsw_ef_construction
    index.hnsw.efSearch = config.hnsw_ef_search
    return _Built(index, "hnsw")


def ivf_nlist(config: DenseConfig, n_train: int) -> int:
    """Number of IVF lists for ``n_train`` training vectors.

    ``config.ivf_nlist`` or, when 0, ``4 * sqrt(n)``; clamped so each list gets at
    least 39 training points.
    """
    wanted = config.ivf_nlist or int(4 * math.sqrt(max(n_train, 1)))
    return max(1, min(wanted, n_train // MIN_POINTS_PER_LIST))


def _build_ivfpq(dim: int, config: DenseConfig, train: np.ndarray) -> _Built:
    n = len(train)
    nlist = ivf_nlist(config, n)
    needed = max(2**config.pq_nbits, MIN_POINTS_PER_LIST * nlist)
    if n < needed:
        log.info("ivfpq needs %d training vectors, have %d: using flat", needed, n)
        return _build_flat(dim, config, train)
    pq_m = max(m for m in range(1, config.pq_m + 1) if dim % m == 0)
    if pq_m != config.pq_m:  # only reachable through auto: open() rejects an explicit misfit
        log.warning("pq_m=%d does not divide dim=%d; using pq_m=%d", config.pq_m, dim, pq_m)
    quantizer = faiss.IndexFlatIP(dim)
    ivf = faiss.IndexIVFPQ(quantizer, dim, nlist, pq_m, config.pq_nbits, faiss.METRIC_INNER_PRODUCT)
    ivf.nprobe = config.ivf_nprobe
    refine = faiss.IndexRefineFlat(ivf)
    refine.k_factor = float(config.refine_factor)
    refine.train(train)
    return _Built(refine, "ivfpq")


_REGISTRY: dict[str, Callable[[int, DenseConfig, np.ndarray], _Built]] = {
    "flat": _build_flat,
    "hnsw": _build_hnsw,
    "ivfpq": _build_ivfpq,
}


def resolve_kind(config: DenseConfig, n: int) -> str:
    """The kind to build for ``n`` vectors under ``config`` (``auto`` resolved).

    Raises:
        ConfigError: for an unknown kind, listing the valid ones.
    """
    kind = config.index
    if kind not in KINDS:
        raise ConfigError("RAG_DENSE__INDEX", f"unknown index type {kind!r}; valid: {' | '.join(KINDS)}")
    if kind != "auto":
        return kind
    if n < config.auto_flat_below:
        return "flat"
    if n < config.auto_hnsw_below:
        return "hnsw"
    return "ivfpq"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _as_ids(ids: Any, name: str) -> np.ndarray:
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise InputError(name, f"expected a 1-D array of chunk ids, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise InputError(name, f"expected integer chunk ids, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.int64)


def _unmapped(index: faiss.Index) -> faiss.Index:
    """The index inside the IndexIDMap2 wrapper."""
    return faiss.downcast_index(index.index)


class DenseIndex:
    """FAISS index of one collection's chunk vectors, keyed by chunk id.

    One process writes (the caller holds the collection lock); readers call
    :meth:`reload_if_changed` to pick up saves. Build with :meth:`open`.

    Example:
        In the service only :class:`~rag.index.writer.CollectionWriter` writes a collection's
        index; this one lives in a scratch directory.

        >>> import tempfile
        >>> from pathlib import Path
        >>> import numpy as np
        >>> from rag.config import DenseConfig
        >>> index = DenseIndex.open(Path(tempfile.mkdtemp()), DenseConfig(), "toy-model", 2)
        >>> index.add(np.array([1, 2]), np.array([[1.0, 0.0], [0.0, 1.0]], np.float32))
        >>> query = np.array([0.6, 0.8], np.float32)
        >>> [(h.chunk_id, round(h.score, 2)) for h in index.search(query, k=2)]
        [(2, 0.8), (1, 0.6)]
        >>> [h.chunk_id for h in index.search(query, k=2, deny=np.array([2]))]
        [1]
        >>> index.kind, index.ntotal
        ('flat', 2)
    """

    def __init__(
        self, directory: Path, config: DenseConfig, model_id: str, dim: int, *, cipher: DataCipher | None = None
    ) -> None:
        """Prefer :meth:`open`; this builds an empty in-memory index and touches no files."""
        self.directory = Path(directory)
        self.cipher = cipher
        self.config = config
        self.model_id = model_id
        self.dim = int(dim)
        self._generation = 0
        self._manifest_stat: tuple[int, int, int] | None = None
        self._index, self._kind = self._new_index(np.empty((0, self.dim), np.float32))
        self._gpu_index: faiss.Index | None = None
        self._sorted_ids: np.ndarray | None = None

    # ------------------------------------------------------------------ open / save

    @classmethod
    def open(
        cls, directory: Path, config: DenseConfig, model_id: str, dim: int, *, cipher: DataCipher | None = None
    ) -> DenseIndex:
        """Load the index saved in ``directory``, or start an empty one.

        Args:
            directory: the collection's directory (created if missing).
            config: dense index settings.
            model_id: embedding model the vectors come from.
            dim: vector dimension.
            cipher: encrypts saved files and decrypts them on load (encryption at rest).

        Returns:
            The index; empty and unsaved when the directory holds none.

        Raises:
            ConfigError: unknown index kind, or ``ivfpq`` with a ``pq_m`` that does not
                divide ``dim`` (under ``auto`` the largest divisor below it is used).
            IndexMismatchError: the saved index has another model, dimension or metric.
            IndexCorruptError: the index file does not match the manifest's checksum.
            ConfigError: naming ``RAG_ENCRYPTION__KEY_FILE``: an encrypted index without the key
                (or with a wrong one), or a plain index while encryption is on.
        """
        resolve_kind(config, 0)
        if dim < 1:
            raise InputError("dim", f"must be positive, got {dim}")
        if config.index == "ivfpq" and dim % config.pq_m:
            raise ConfigError("RAG_DENSE__PQ_M", f"{config.pq_m} does not divide the vector dimension {dim}")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self = cls(directory, config, model_id, dim, cipher=cipher)
        if self.manifest_path.exists():
            self._load()
        return self

    @property
    def manifest_path(self) -> Path:
        """Path of the manifest file."""
        return self.directory / MANIFEST_NAME

    def _read_manifest(self) -> tuple[dict[str, Any], tuple[int, int, int]]:
        with open(self.manifest_path, "rb") as f:
            st = os.fstat(f.fileno())
            raw = f.read()
        try:
            manifest = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise IndexCorruptError(self.manifest_path, f"unreadable manifest: {exc.msg}") from None
        return manifest, (st.st_ino, st.st_mtime_ns, st.st_size)

    def _check_compatible(self, manifest: dict[str, Any]) -> None:
        for key, ours in (("model_id", self.model_id), ("dim", self.dim), ("metric", METRIC)):
            theirs = manifest.get(key)
            if theirs != ours:
                raise IndexMismatchError(
                    f"dense index in {self.directory} was built with {key}={theirs!r}, "
                    f"but {key}={ours!r} was requested; rebuild it to switch vector spaces"
                )
        if manifest.get("normalized") is not True:
            raise IndexMismatchError(f"dense index in {self.directory} holds unnormalised vectors")
        encrypted = bool(manifest.get("encrypted", False))
        if encrypted and self.cipher is None:
            raise ConfigError(ENCRYPTION_SETTING, f"dense index in {self.directory} is encrypted; set the key file")
        if not encrypted and self.cipher is not None:
            raise ConfigError(
                ENCRYPTION_SETTING, f"dense index in {self.directory} was written without encryption; rebuild it"
            )

    def _read_index(self, path: Path) -> faiss.Index:
        if self.cipher is None:
            return faiss.read_index(str(path))
        data = self.cipher.decrypt(path.read_bytes(), _AAD)
        return faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))

    def _write_index(self, tmp: Path) -> None:
        if self.cipher is None:
            faiss.write_index(self._index, str(tmp))
        else:
            tmp.write_bytes(self.cipher.encrypt(faiss.serialize_index(self._index).tobytes(), _AAD))

    def _load(self) -> None:
        # A writer may replace the files between our reading the manifest and the
        # index file; then the manifest has moved on and we simply try again.
        for attempt in range(3):
            manifest, stat = self._read_manifest()
            self._check_compatible(manifest)
            path = self.directory / str(manifest.get("file", ""))
            try:
                digest = _sha256(path)
            except FileNotFoundError:
                if attempt < 2 and self._read_manifest()[1] != stat:
                    continue
                raise IndexCorruptError(path, "index file named by the manifest is missing") from None
            if digest != manifest.get("sha256"):
                if attempt < 2 and self._read_manifest()[1] != stat:
                    continue
                raise IndexCorruptError(path, f"sha256 {digest} does not match manifest {manifest.get('sha256')}")
            try:
                index = self._read_index(path)
            except RuntimeError as exc:
                raise IndexCorruptError(path, f"FAISS cannot read it: {str(exc).splitlines()[0]}") from None
            if index.ntotal != manifest.get("ntotal") or index.d != self.dim:
                raise IndexCorruptError(path, "vector count or dimension differs from the manifest")
            self._index = index
            self._kind = str(manifest["kind"])
            self._generation = int(manifest["generation"])
            self._manifest_stat = stat
            self._changed()
            return

    def save(self) -> None:
        """Write the index and then its manifest, atomically and durably.

        The previous generation's file is kept so readers that just read the old
        manifest can still load it; older ones are removed.
        """
        generation = self._generation + 1
        name = f"dense.{generation}.faiss"
        path = self.directory / name
        atomic_write(path, self._write_index)
        manifest = {
            "format": FORMAT_VERSION,
            "model_id": self.model_id,
            "dim": self.dim,
            "metric": METRIC,
            "normalized": True,
            "kind": self._kind,
            "config_kind": self.config.index,
            "ntotal": int(self._index.ntotal),
            "file": name,
            "sha256": _sha256(path),
            "generation": generation,
        }
        if self.cipher is not None:
            manifest["encrypted"] = True
        data = json.dumps(manifest, indent=2, sort_keys=True).encode()
        atomic_write_bytes(self.manifest_path, data)
        self._generation = generation
        self._manifest_stat = self._read_manifest()[1]
        for old in self.directory.glob("dense.*.faiss"):
            try:
                old_gen = int(old.name.split(".")[1])
            except ValueError:
                continue
            if old_gen < generation - 1:
                old.unlink(missing_ok=True)

    def reload_if_changed(self) -> bool:
        """Reload when another process has saved a new generation.

        Costs one ``stat`` when nothing changed.

        Returns:
            True when a new generation was loaded.

        Raises:
            IndexMismatchError: the new index has another model, dimension or metric.
            IndexCorruptError: the new index file does not match its checksum.
        """
        try:
            st = os.stat(self.manifest_path)
        except FileNotFoundError:
            return False
        if (st.st_ino, st.st_mtime_ns, st.st_size) == self._manifest_stat:
            return False
        manifest, stat = self._read_manifest()
        if int(manifest.get("generation", -1)) == self._generation:
            self._manifest_stat = stat
            return False
        self._load()
        return True

    # ------------------------------------------------------------------ writing

    def _new_index(self, vectors: np.ndarray) -> tuple[faiss.Index, str]:
        kind = resolve_kind(self.config, len(vectors))
        train = vectors
        if kind == "ivfpq" and len(vectors) > self.config.train_sample:
            rng = np.random.default_rng(0)
            train = vectors[np.sort(rng.choice(len(vectors), self.config.train_sample, replace=False))]
        built = _REGISTRY[kind](self.dim, self.config, np.ascontiguousarray(train))
        return faiss.IndexIDMap2(built.index), built.kind

    def _check_vectors(self, ids: Any, vectors: Any) -> tuple[np.ndarray, np.ndarray]:
        ids = _as_ids(ids, "ids")
        vectors = np.asarray(vectors)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise InputError("vectors", f"expected shape (n, {self.dim}), got {vectors.shape}")
        if vectors.dtype != np.float32:
            raise InputError("vectors", f"expected float32, got {vectors.dtype}")
        if len(vectors) != len(ids):
            raise InputError("ids", f"{len(ids)} ids for {len(vectors)} vectors")
        if len(np.unique(ids)) != len(ids):
            raise InputError("ids", "duplicate chunk ids")
        if not np.isfinite(vectors).all():
            raise InputError("vectors", "contains NaN or infinity")
        return ids, np.ascontiguousarray(vectors)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors in memory; call :meth:`save` to persist.

        Args:
            ids: int64 chunk ids, shape ``(n,)``, none already in the index.
            vectors: float32 L2-normalised vectors, shape ``(n, dim)``.

        Raises:
            InputError: wrong shape or dtype, or an id already present.
        """
        ids, vectors = self._check_vectors(ids, vectors)
        if not len(ids):
            return
        present = np.isin(ids, self._ids_sorted())
        if present.any():
            raise InputError("ids", f"already in the index: {ids[present][:5].tolist()}")
        self._index.add_with_ids(vectors, ids)
        self._changed()

    def rebuild(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Replace the whole index with these vectors (``auto`` resolved by their count).

        Used by compaction and reconciliation with the database. Call :meth:`save`
        to persist.

        Args:
            ids: int64 chunk ids, shape ``(n,)``, unique.
            vectors: float32 L2-normalised vectors, shape ``(n, dim)``.

        Raises:
            InputError: wrong shape or dtype, or duplicate ids.
        """
        ids, vectors = self._check_vectors(ids, vectors)
        index, kind = self._new_index(vectors)
        if len(ids):
            index.add_with_ids(vectors, ids)
        self._index, self._kind = index, kind
        self._changed()

    def _changed(self) -> None:
        self._gpu_index = None
        self._sorted_ids = None

    def _ids_sorted(self) -> np.ndarray:
        if self._sorted_ids is None:
            self._sorted_ids = np.sort(self.ids())
        return self._sorted_ids

    # ------------------------------------------------------------------ facts

    @property
    def ntotal(self) -> int:
        """Number of vectors in the index (tombstoned ones included until a rebuild)."""
        return int(self._index.ntotal)

    @property
    def kind(self) -> str:
        """The kind actually built: ``flat``, ``hnsw`` or ``ivfpq`` (never ``auto``).

        An ``ivfpq`` request without enough training vectors gives ``flat``.
        """
        return self._kind

    @property
    def generation(self) -> int:
        """Save counter from the manifest; 0 before the first save."""
        return self._generation

    @property
    def needs_rebuild(self) -> bool:
        """Whether the configured kind, resolved for the current size, differs from the built one."""
        wanted = resolve_kind(self.config, self.ntotal)
        if wanted == "ivfpq" and self._kind == "flat":
            # The fallback stays right until there is enough data to train on.
            n = min(self.ntotal, self.config.train_sample)
            return n >= max(2**self.config.pq_nbits, MIN_POINTS_PER_LIST * ivf_nlist(self.config, n))
        return wanted != self._kind

    def ids(self) -> np.ndarray:
        """All chunk ids in the index, in insertion order (int64)."""
        return faiss.vector_to_array(self._index.id_map).astype(np.int64, copy=False)

    @property
    def bytes_on_disk(self) -> int:
        """Size of the current generation's index file, 0 before the first save."""
        path = self.directory / f"dense.{self._generation}.faiss"
        return path.stat().st_size if self._generation and path.exists() else 0

    @property
    def bytes_per_vector(self) -> float:
        """Estimated bytes per vector in the searched structure, ids excluded.

        ``flat``: ``4 * dim``; ``hnsw``: ``4 * dim`` plus ``2 * M`` level-0 links of
        4 bytes and about ``M / (M - 1)`` more for upper levels; ``ivfpq``: the PQ code,
        ``pq_m * pq_nbits / 8``. The exact vectors kept for re-ranking are reported
        by :attr:`refine_bytes_per_vector`.
        """
        if self._kind == "flat":
            return 4.0 * self.dim
        if self._kind == "hnsw":
            m = _unmapped(self._index).hnsw.nb_neighbors(1)
            # Level 0 has 2*M links; a node reaches level >= 1 with probability ~1/M.
            return 4.0 * self.dim + 4.0 * (2 * m + m / max(m - 1, 1))
        ivf = faiss.downcast_index(_unmapped(self._index).base_index)
        return ivf.pq.M * ivf.pq.nbits / 8

    @property
    def refine_bytes_per_vector(self) -> float:
        """Bytes per vector of exact vectors kept for re-ranking (``ivfpq`` only, else 0)."""
        return 4.0 * self.dim if self._kind == "ivfpq" else 0.0

    # ------------------------------------------------------------------ search

    def _search_params(self, k: int, sel: faiss.IDSelector | None) -> tuple[faiss.SearchParameters | None, list]:
        """Kind-specific search parameters with the selector; second item keeps objects alive."""
        keep: list = [sel]
        if self._kind == "hnsw":
            params = faiss.SearchParametersHNSW()
            params.efSearch = max(self.config.hnsw_ef_search, k)
        elif self._kind == "ivfpq":
            base = faiss.SearchParametersIVF()
            base.nprobe = self.config.ivf_nprobe
            if sel is not None:
                # IndexIDMap2 translates only the outer params' selector; IndexRefine
                # passes the inner (base) params on untouched, so translate it here.
                translated = faiss.IDSelectorTranslated(self._index.id_map, sel)
                base.sel = translated
                keep.append(translated)
            params = faiss.IndexRefineSearchParameters()
            params.k_factor = float(self.config.refine_factor)
            params.base_index_params = base
            keep.append(base)
            return params, keep
        else:
            if sel is None:
                return None, keep
            params = faiss.SearchParameters()
        if sel is not None:
            params.sel = sel
        return params, keep

    def _exact(self, queries: np.ndarray, k: int, allow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k over the allowed ids' stored vectors."""
        allow = allow[np.isin(allow, self._ids_sorted(), assume_unique=True)]
        nq = len(queries)
        scores = np.full((nq, k), -np.inf, np.float32)
        labels = np.full((nq, k), -1, np.int64)
        if not len(allow):
            return scores, labels
        vectors = self._index.reconstruct_batch(allow)
        sims = queries @ vectors.T
        top = min(k, len(allow))
        order = np.argsort(-sims, axis=1, kind="stable")[:, :top]
        scores[:, :top] = np.take_along_axis(sims, order, axis=1)
        labels[:, :top] = allow[order]
        return scores, labels

    def _searcher(self, filtered: bool) -> faiss.Index:
        """The index to search with: a GPU copy for unfiltered flat/ivfpq when FAISS has GPUs."""
        if filtered or self._kind == "hnsw" or not self.ntotal:
            return self._index
        if self._gpu_index is None:
            try:
                if faiss.get_num_gpus() > 0:
                    self._gpu_index = faiss.index_cpu_to_all_gpus(self._index)
            except (AttributeError, RuntimeError) as exc:  # CPU-only FAISS, or a kind GPUs lack
                log.debug("dense search stays on CPU: %s", exc)
            if self._gpu_index is None:
                self._gpu_index = self._index
        return self._gpu_index

    def search_batch(
        self,
        queries: np.ndarray,
        k: int,
        allow: np.ndarray | None = None,
        deny: np.ndarray | None = None,
    ) -> list[list[Hit]]:
        """Top-k chunks by inner product for each query, filters applied inside the search.

        Args:
            queries: float32 L2-normalised query vectors, shape ``(nq, dim)`` or ``(dim,)``.
            k: hits per query; more than the index holds is fine.
            allow: only these chunk ids may be returned (None: all).
            deny: these chunk ids are never returned (tombstones).

        Returns:
            One list per query, sorted by score descending, ties by chunk id ascending.

        Raises:
            InputError: wrong query shape, or ``k`` < 1.
        """
        queries = np.asarray(queries, dtype=np.float32)
        if queries.ndim == 1:
            queries = queries[None, :]
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise InputError("query", f"expected shape ({self.dim},) or (nq, {self.dim}), got {queries.shape}")
        if k < 1:
            raise InputError("k", f"must be at least 1, got {k}")
        queries = np.ascontiguousarray(queries)
        faiss_threads_here()
        index = self._index
        if allow is not None:
            allow = np.unique(_as_ids(allow, "allow"))
            if deny is not None:
                allow = np.setdiff1d(allow, _as_ids(deny, "deny"), assume_unique=True)
            deny = None
            if not len(allow):
                return [[] for _ in queries]
        if not index.ntotal:
            return [[] for _ in queries]
        if allow is not None and len(allow) <= max(EXACT_ALLOW_MAX, k):
            scores, labels = self._exact(queries, k, allow)
        else:
            sel: faiss.IDSelector | None = None
            keep: list = []
            if allow is not None:
                sel = faiss.IDSelectorBatch(allow)
                keep.append(allow)
            elif deny is not None and len(deny):
                deny = np.unique(_as_ids(deny, "deny"))
                inner = faiss.IDSelectorBatch(deny)
                sel = faiss.IDSelectorNot(inner)
                keep += [deny, inner]
            params, more = self._search_params(k, sel)
            keep += more
            kk = min(k, int(index.ntotal))
            searcher = self._searcher(sel is not None)
            try:
                scores, labels = searcher.search(queries, kk, params=params)
            except RuntimeError:
                if searcher is index:
                    raise
                log.warning("GPU dense search failed; searching on CPU from now on", exc_info=True)
                self._gpu_index = index
                scores, labels = index.search(queries, kk, params=params)
        results = []
        for row_scores, row_labels in zip(scores.tolist(), labels.tolist(), strict=True):
            ranked = sorted((-s, c) for c, s in zip(row_labels, row_scores, strict=True) if c >= 0)
            results.append([Hit(c, -neg) for neg, c in ranked])
        return results

    def search(
        self,
        query: np.ndarray,
        k: int,
        allow: np.ndarray | None = None,
        deny: np.ndarray | None = None,
    ) -> list[Hit]:
        """Top-k chunks by inner product for one query; see :meth:`search_batch`.

        Args:
            query: float32 L2-normalised vector, shape ``(dim,)`` or ``(1, dim)``.
            k: number of hits.
            allow: only these chunk ids may be returned (None: all).
            deny: these chunk ids are never returned.

        Returns:
            Hits sorted by score descending, ties by chunk id ascending.
        """
        query = np.asarray(query, dtype=np.float32)
        if query.ndim == 2 and query.shape[0] != 1:
            raise InputError("query", f"search takes one query, got {query.shape[0]}; use search_batch")
        return self.search_batch(query.reshape(1, -1) if query.ndim == 1 else query, k, allow, deny)[0]


def reencrypt_files(directory: Path, cipher: DataCipher) -> int:
    """Re-encrypt a saved index's files under ``cipher``'s current key (a key rotation).

    The caller holds the collection's writer lock. Each file is replaced atomically and the
    manifest's checksum follows the file it names; files already under the current key are left.

    Args:
        directory: the index directory (the one :meth:`DenseIndex.open` was given).
        cipher: a keyring holding the old key and, first, the new one.

    Returns:
        How many files were rewritten.

    Raises:
        ConfigError: naming ``RAG_ENCRYPTION__KEY_FILE``: a plain file, or one no key decrypts.
    """
    directory = Path(directory)
    manifest_path = directory / MANIFEST_NAME
    if not manifest_path.exists():
        return 0
    manifest = json.loads(manifest_path.read_bytes())
    if not manifest.get("encrypted"):
        raise ConfigError(ENCRYPTION_SETTING, f"dense index in {directory} is not encrypted; rebuild it instead")
    rewritten = 0
    for path in sorted(directory.glob("dense.*.faiss")):
        blob = path.read_bytes()
        if cipher.key_id_of(blob) == cipher.current_key_id:
            continue
        atomic_write_bytes(path, cipher.encrypt(cipher.decrypt(blob, _AAD), _AAD))
        rewritten += 1
    named = directory / str(manifest.get("file", ""))
    if rewritten and named.is_file():
        manifest["sha256"] = _sha256(named)
        atomic_write_bytes(manifest_path, json.dumps(manifest, indent=2, sort_keys=True).encode())
    return rewritten
