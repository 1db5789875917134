"""The FAISS vector store: a base index built offline plus a small exact delta for what changed since.

- **Base.** Exact `IDMap2,Flat` below `ann_threshold` vectors; above it a trained IVF index with
  compressed codes: by default 4-bit product quantisation, one code per 4 dimensions, scanned with
  SIMD (`IVF{nlist},PQ{dim/4}x4fs`: 160 bytes a vector at 1280 dimensions, 1M in ~160 MB). Training the
  coarse quantiser happens only in `build_from_chunks` (rebuild, or the snapshot writer's background step),
  never in a request. A loaded base is read-only, memory-mapped where FAISS allows it: not the default
  fast-scan lists, which every worker reads into its own memory (`_fast_scan`).
- **Re-rank.** Codes that small only shortlist: the best `rerank` candidates are scored again exactly
  against float16 copies of the vectors kept in `vectors.npy` on disk and read with `pread` for just
  those rows, so the file costs no process memory (the OS page cache holds what fits, shared by every
  worker). bench/results/scale at 1M: recall@10 0.973, top-1 as exact search, p50 8 ms, 175 MB.
- **Delta.** Upserts land in an in-memory exact `IDMap2,Flat`; a deleted or replaced base vector is
  masked (an `IDSelector` at search time) rather than removed, so one registration costs the same at
  10k and 1M vectors. A store whose delta grows past `compact_after`, or that crosses the threshold,
  answers `needs_rebuild()`; it keeps serving exactly until the rebuilt store is swapped in.
Files: `index.faiss` (base), `ids.npy` (base ids, sorted), `delta.npz`, `masked.npy`, `index.json`."""
import contextlib
import json
import math
import os
import re
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import faiss
import numpy as np

from indexing.backends.exact_rows import FileRows, RowsWriter
from indexing.vectorstore import IndexCorrupt, IndexEncoderMismatch

BASE_FILE, IDS_FILE, VECTORS_FILE, DELTA_FILE, MASKED_FILE, SIDECAR_FILE = (
    "index.faiss", "ids.npy", "vectors.npy", "delta.npz", "masked.npy", "index.json")
BASE_FILES = (BASE_FILE, VECTORS_FILE, IDS_FILE)  # a base's files, the id list last (it marks it complete)
EXACT_FACTORY = "IDMap2,Flat"
PQ_MIN_VECTORS = 2_000  # below this an `auto` approximate base uses SQ8 (see codes_for)
FLAT_LISTS_MAX = 4096  # more lists than this: an HNSW coarse quantiser, trained in two levels
# A few queries scan the exact delta on one core: with FAISS's two OpenMP threads, right after the
# base's search, one query over a 20,000 x 1280 delta took 39 ms p50 instead of 16 on 2 cores
# (bench/results/scale/delta-cost.md; likely threads still spinning from the base's search and numpy's
# re-rank, not measured apart). 0: FAISS's default.
DELTA_SCAN_THREADS = 1
# One query's base search on one thread too: FAISS's OpenMP team, woken for a single query's lists and
# for the rotation (`RR<dim>,`, a BLAS product on OpenMP threads too), then spinning, cost a rotated 1M
# base 9 ms of p50 on 2 cores: 23.9 ms against 14.6 on one thread, as fast as the unrotated base
# (bench/results/scale/rotation.md, both ways interleaved).
BASE_SCAN_THREADS = 1
# Splitting one query's probes over FAISS's OpenMP team (fast-scan `implem` 14, other IVF codes
# `parallel_mode` 1) from this many codes a query (nprobe x the mean list): OFF. FAISS scans one query's
# lists on one thread whatever its team, and over 1.25M random codes alone (ad hoc, 2-core Intel Xeon VM)
# a split scan took ~16 ms against ~28; but on the real 10M base with the runtime's re-rank and retry it
# made a query slower, p50 / p99 58.6 / 189 ms against 35.4 / 141 on one thread, interleaved, same VM
# (bench/results/scale/runs/scale-10m-split.md; likely the team spinning against the re-rank's reads,
# not measured apart). Kept switchable for the benches (bench.scale_10m, bench.rotation).
PARALLEL_SCAN_FROM = float("inf")
FAST_SCAN_PROBES_IN_PARALLEL = 14  # IndexIVFFastScan.implem: "multithreaded internally across nprobes and queries"
BLAS_FROM_QUERIES = 20  # faiss's distance_compute_blas_threshold: from here on a batch, parallel as FAISS likes
TRAIN_PER_LIST, TRAIN_MAX = 64, 4096 * 64  # training vectors: 64 a list, at most 262,144 (1.3 GB at 1280 d)


@dataclass(frozen=True)
class IndexParams:
    """How a base index is chosen (settings ATTRIB_ANN_*)."""
    ann_threshold: int = 50_000
    ann_codes: str = "auto"  # codes of the approximate index: auto (PQ<dim/4>x4fs), SQ8, Flat, PQ<m>[x4fs]
    # PQ codes of a randomly rotated vector (`RR<dim>,` before the IVF): a feature's variance sits in a
    # few of its dimensions, and PQ spends the same 4 bits on every 4 dimensions. At 1M on the real
    # cross-context features the rotation raised recall@10 from 0.952 to 0.983 and brought top-1 and
    # AP@100 from 0.79 / 1.52 to 0.26 / 0.45 points under exact search (bench/results/scale/rotation.md).
    rotate: bool = True
    nprobe: int = 128  # 4-bit codes scan fast: 1/8 of the lists at 1M costs ~3 ms; raised for more lists (probes)
    # Candidates of an approximate base scored again exactly (float16 vectors on disk); 0 = off.
    rerank: int = 1000
    compact_after: int = 20_000  # changes beside the base before the snapshot writer folds them in or rebuilds
    # A base is folded (its changes merged into a copy, its quantiser kept: backends/faiss_fold.py) while
    # the count stays within this factor of the count its quantiser was trained on, and rebuilt from the
    # database, trained again, beyond it (or when the index type changes). Below 1 (0): always rebuild.
    retrain_growth: float = 2.0
    # A query whose best approximate score is below `retry_below` is searched again visiting
    # `retry_nprobe` lists: queries far from everything (sketches, paintings of a work) have their
    # answer in lists the first pass did not visit, and their neighbours sit close together, so the
    # second search also re-ranks deeper (bench/results/scale: at 1M, 128 lists and 1,000 candidates
    # alone keep top-1 at 52.4% against 54.8% exact; with this retry, 54.8%). 0 = off.
    retry_below: float = 0.55
    retry_nprobe: int = 512
    retry_rerank: int = 3000
    # IVF lists (ATTRIB_ANN_LISTS): 0 = about sqrt(N), at most 4,096. Past 4,096 the coarse quantiser is
    # an HNSW graph over centroids trained in two levels (sqrt(nlist) clusters, then each split): one flat
    # k-means over 16,384 centroids would take hours on 2 cores, and so would assigning 10M vectors exactly.
    lists: int = 0

    def factory(self, n: int, dim: int) -> str:
        if n < self.ann_threshold:
            return EXACT_FACTORY
        nlist = nlist_for(n, self.lists)
        quantiser = "_HNSW32" if nlist > FLAT_LISTS_MAX else ""
        codes = codes_for(self.ann_codes, dim, n)
        rotation = f"RR{dim}," if self.rotate and codes.startswith("PQ") else ""
        return f"{rotation}IVF{nlist}{quantiser},{codes}"

    def probes(self, n: int) -> tuple[int, int]:
        """(nprobe, retry_nprobe) of an approximate base of n vectors: the settings, raised to 1/8 and 1/4
        of its lists, so that the share of lists a query visits does not shrink as N grows. Unchanged up
        to 2M vectors (1,024 lists); at 10M (4,096 lists) 512 and 1,024: recall@10 0.918 and top-1 50.0 %
        against 0.903 and 48.9 % with 128 and 512, p50 19.9 ms against 9.9 (bench/results/scale/scale-10m.md)."""
        nlist = nlist_for(n, self.lists)
        return max(self.nprobe, nlist // 8), max(self.retry_nprobe, nlist // 4) if self.retry_nprobe else 0


def codes_for(codes: str, dim: int, n: int) -> str:
    """`auto`: 4-bit PQ with one sub-quantiser per 4 dimensions (fast-scan); SQ8 where dim % 4 != 0 or
    for the tiny approximate bases of a lowered threshold (16 centroids per sub-quantiser want thousands
    of training vectors)."""
    if codes != "auto":
        return codes
    return f"PQ{dim // 4}x4fs" if dim % 4 == 0 and n >= PQ_MIN_VECTORS else "SQ8"


def nlist_for(n: int, lists: int = 0) -> int:
    """`lists` when set (at most one list per 64 vectors, and 32,768: 8 training vectors a list), else
    about sqrt(n), a power of two, at most FLAT_LISTS_MAX: 1M -> 1024 (training stays in tens of seconds
    on 2 cores)."""
    if lists:
        return int(max(1, min(lists, n // TRAIN_PER_LIST, TRAIN_MAX // 8)))
    return int(min(n, FLAT_LISTS_MAX, max(16, 2 ** round(math.log2(max(1.0, math.sqrt(n)))))))


def train(index: faiss.Index, sample: np.ndarray) -> None:
    """Train an IVF base on this sample. More than FLAT_LISTS_MAX lists: the centroids come from
    two-level spherical k-means (faiss.contrib), are put in the HNSW quantiser, and only the codes are
    trained by `index.train` (FAISS skips a quantiser that already holds nlist centroids)."""
    ivf = faiss.extract_index_ivf(index)
    if ivf.nlist > FLAT_LISTS_MAX:
        from faiss.contrib.clustering import two_level_clustering
        inside = sample  # the centroids live where the lists do: after the rotation (`RR<dim>,`), if any
        for i in range(index.chain.size() if isinstance(index, faiss.IndexPreTransform) else 0):
            transform = index.chain.at(i)
            if not transform.is_trained:
                transform.train(inside)
            inside = transform.apply(inside)
        first = 2 ** round(math.log2(math.sqrt(ivf.nlist)))
        centroids, _ = two_level_clustering(inside, first, ivf.nlist, clustering_niter=10, spherical=True,
                                             min_points_per_centroid=8)
        ivf.quantizer.add(np.ascontiguousarray(centroids, np.float32))
    index.train(sample)


@dataclass(frozen=True)
class StoreState:
    """What `FaissStore.state` copies: the store's changes on top of its base at one log position."""
    delta_ids: np.ndarray
    delta_vectors: np.ndarray
    masked: np.ndarray
    manifest: dict

    @property
    def applied_seq(self) -> int:
        return self.manifest["applied_seq"]


@dataclass
class FaissStore:
    encoder_id: str
    dim: int
    base: faiss.Index
    base_ids: np.ndarray  # sorted int64, the ids held by `base`
    factory: str = EXACT_FACTORY
    nprobe: int = 1
    applied_seq: int = 0
    index_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    base_path: Path | None = None  # the file the base was read from (a snapshot copies it as is)
    retry_below: float = 0.0  # IndexParams.retry_below (0: never retry)
    retry_nprobe: int = 0
    rerank: int = 0  # IndexParams.rerank: candidates scored again exactly from `rows` (0: off)
    retry_rerank: int = 0
    rows: FileRows | None = None  # float16 copies of the base vectors, base_ids order
    trained_count: int = 0  # vectors when the quantiser was trained (0: the base's own count)
    delta: faiss.Index = field(init=False, repr=False)
    masked: set[int] = field(default_factory=set)
    _params: object = field(default=None, init=False, repr=False)
    _ivf: object = field(default=None, init=False, repr=False)  # the base's IVF, downcast (None: exact)

    def __post_init__(self) -> None:
        self.delta = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))

    # -- the VectorStore protocol -----------------------------------------------------------------
    def upsert(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape != (len(ids), self.dim):
            raise ValueError(f"expected vectors of shape ({len(ids)}, {self.dim}), got {vectors.shape}")
        if len(ids):
            self.delete(ids)
            self.delta.add_with_ids(vectors, ids)

    def delete(self, ids: np.ndarray) -> int:
        ids = np.unique(np.asarray(ids, dtype=np.int64))
        if len(ids) == 0:
            return 0
        removed = int(self.delta.remove_ids(ids)) if self.delta.ntotal else 0
        newly_masked = [int(i) for i in ids[self._in_base(ids)] if int(i) not in self.masked]
        self.masked.update(newly_masked)
        if newly_masked:
            self._params = None
        return removed + len(newly_masked)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """queries [m, dim] -> (ids [m, k'], scores [m, k']), k' = min(k, count); an approximate base
        may return -1 where it found fewer, which maps to no work and is ignored by ranking."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        k = min(k, self.count())
        if k == 0:
            return np.zeros((len(queries), 0), np.int64), np.zeros((len(queries), 0), np.float32)
        parts = []
        if len(self.base_ids) > len(self.masked):
            parts.append(self._search_base(queries, k))
        if self.delta.ntotal:
            with omp_threads(DELTA_SCAN_THREADS if len(queries) < BLAS_FROM_QUERIES else 0):
                parts.append(self.delta.search(queries, min(k, self.delta.ntotal))[::-1])
        return _merge_top_k(parts, k)

    def count(self) -> int:
        return len(self.base_ids) - len(self.masked) + int(self.delta.ntotal)

    def describe(self) -> dict:
        return {"backend": "faiss", "index_type": self.factory, "exact": self.factory == EXACT_FACTORY,
                "nprobe": self.nprobe, "retry_below": self.retry_below, "retry_nprobe": self.retry_nprobe,
                "rerank": self._rerank_depth(), "retry_rerank": self._rerank_depth(retry=True),
                "count": self.count(), "dim": self.dim, "encoder_id": self.encoder_id,
                "applied_seq": self.applied_seq, "index_id": self.index_id, "base_count": len(self.base_ids),
                "delta_count": int(self.delta.ntotal), "masked_count": len(self.masked),
                "trained_count": self.trained_on(),
                "memory_mapped": self.base_path is not None and not _fast_scan(self.factory)}

    # -- beyond the protocol: used by snapshots, rebuilds and the consistency check ---------------
    def __len__(self) -> int:
        return self.count()

    def ids(self) -> np.ndarray:
        live = self.base_ids[~np.isin(self.base_ids, np.fromiter(self.masked, np.int64))]
        return np.concatenate([live, faiss.vector_to_array(self.delta.id_map).astype(np.int64)])

    def trained_on(self) -> int:
        """How many vectors the base's quantiser was trained on a sample of (folds keep it)."""
        return self.trained_count or len(self.base_ids)

    def list_imbalance(self) -> float:
        """How unevenly an IVF base's lists are filled (FAISS's imbalance factor, 1.0 = even; a query
        scans more codes the higher it is): a fold keeps the lists its quantiser made. 1.0 when exact."""
        if self.factory == EXACT_FACTORY:
            return 1.0
        return float(faiss.extract_index_ivf(self.base).invlists.imbalance_factor())

    def needs_rebuild(self, params: IndexParams) -> bool:
        """True when the base no longer fits the store: too many changes on top of it, or the count
        crossed the threshold in either direction (exact <-> approximate)."""
        wanted_exact = self.count() < params.ann_threshold
        changed = self.delta.ntotal + len(self.masked)
        return changed > params.compact_after or wanted_exact != (self.factory == EXACT_FACTORY)

    def delta_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        ids = faiss.vector_to_array(self.delta.id_map).astype(np.int64)
        return ids, self.delta.index.reconstruct_n(0, self.delta.ntotal) if len(ids) else np.zeros((0, self.dim), np.float32)

    def manifest(self) -> dict:
        return {"format": "attrib-index/2", "index_id": self.index_id, "encoder_id": self.encoder_id,
                "dim": self.dim, "count": self.count(), "factory": self.factory, "nprobe": self.nprobe,
                "retry_below": self.retry_below, "retry_nprobe": self.retry_nprobe, "rerank": self._rerank_depth(),
                "retry_rerank": self._rerank_depth(retry=True), "metric": "inner_product",
                "applied_seq": self.applied_seq, "base_count": len(self.base_ids),
                "trained_count": self.trained_on(), "saved_at": datetime.now(timezone.utc).isoformat()}

    def state(self) -> "StoreState":
        """A copy of what changes after the base was built (delta, mask, log position), taken in
        milliseconds under the caller's lock; the base is never modified, so `save` may write it from
        another thread while this store keeps serving and applying the log."""
        delta_ids, delta_vectors = self.delta_arrays()
        return StoreState(delta_ids, delta_vectors, np.fromiter(sorted(self.masked), np.int64), self.manifest())

    def save(self, directory: Path, write_base: bool = True, state: "StoreState | None" = None) -> None:
        """Write the store (as of `state`, default now); each file replaced atomically, the sidecar
        last. `write_base=False` keeps a base already there (snapshots share one base between many
        small deltas)."""
        directory.mkdir(parents=True, exist_ok=True)
        state = state or self.state()
        if write_base:
            self._write_base(directory / BASE_FILE)
            if self._rerank_depth() and not self.rows.link_to(directory / VECTORS_FILE):
                with _atomic_file(directory / VECTORS_FILE) as f:
                    self.rows.write_to(f)
            with _atomic_file(directory / IDS_FILE) as f:
                np.save(f, self.base_ids)
        with _atomic_file(directory / DELTA_FILE) as f:
            np.savez(f, ids=state.delta_ids, vectors=state.delta_vectors)
        with _atomic_file(directory / MASKED_FILE) as f:
            np.save(f, state.masked)
        _atomic_write(directory / SIDECAR_FILE, json.dumps(state.manifest, indent=2).encode())

    def base_bytes_size(self) -> int:
        """Bytes of the base index as stored (what a worker maps), plus its id list; not the re-rank
        vectors, which are read from disk per query and never held."""
        if self.base_path is not None:
            return self.base_path.stat().st_size + self.base_ids.nbytes
        size = [0]  # counted as FAISS writes it, never held: serialising it whole is gigabytes at 10M

        def count(chunk: bytes) -> int:
            size[0] += len(chunk)
            return len(chunk)
        faiss.write_index(self.base, faiss.PyCallbackIOWriter(count))
        return size[0] + self.base_ids.nbytes

    def _write_base(self, path: Path) -> None:
        """The base index to `path`, streamed: at 10M its codes are gigabytes, and serialising them into
        memory first (then copying that into bytes) held two more copies of them in the writing worker."""
        with _atomic_file(path) as f:
            if self.base_path is not None:
                with open(self.base_path, "rb") as source:
                    shutil.copyfileobj(source, f, 1 << 24)
            else:
                faiss.write_index(self.base, faiss.PyCallbackIOWriter(f.write))

    def _in_base(self, ids: np.ndarray) -> np.ndarray:
        pos = np.searchsorted(self.base_ids, ids)
        pos[pos >= len(self.base_ids)] = 0
        return (self.base_ids[pos] == ids) if len(self.base_ids) else np.zeros(len(ids), bool)

    def _search_base(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, scores) from the base; an approximate base searches its hard queries (best score
        below `retry_below`, after re-ranking) a second time with `retry_nprobe` lists."""
        ids, scores = self._search_lists(queries, k, self.nprobe, self._rerank_depth())
        wider = self.retry_nprobe > self.nprobe or self._rerank_depth(retry=True) > self._rerank_depth()
        if self.factory != EXACT_FACTORY and self.retry_below > 0 and wider:
            hard = np.flatnonzero(scores[:, 0] < self.retry_below)
            if len(hard):
                ids[hard], scores[hard] = self._search_lists(np.ascontiguousarray(queries[hard]), k,
                                                             self.retry_nprobe, self._rerank_depth(retry=True))
        return ids, scores

    def _search_lists(self, queries: np.ndarray, k: int, nprobe: int, depth: int) -> tuple[np.ndarray, np.ndarray]:
        with self.scan_threads(len(queries), nprobe):
            scores, ids = self.base.search(queries, self._fetch_size(k, depth), params=self._search_params(nprobe))
        return self._rerank(queries, ids, k) if depth else (ids, scores)

    @contextlib.contextmanager
    def scan_threads(self, queries: int, nprobe: int):
        """The threads a search of `queries` over `nprobe` lists of the base runs on: a batch as FAISS
        likes; one query on one thread (BASE_SCAN_THREADS), or, past PARALLEL_SCAN_FROM codes, its probes
        split over FAISS's team (off by default: no per-query work for it then)."""
        few = queries < BLAS_FROM_QUERIES
        split = few and PARALLEL_SCAN_FROM != float("inf") and self._codes_scanned(nprobe) >= PARALLEL_SCAN_FROM
        with omp_threads(BASE_SCAN_THREADS if few and not split else 0), probes_in_parallel(self._ivf, split):
            yield

    def _codes_scanned(self, nprobe: int) -> float:
        """Codes one query's `nprobe` lists hold on average (0 for an exact base)."""
        if self._ivf is None and self.factory != EXACT_FACTORY:
            self._ivf = faiss.downcast_index(faiss.extract_index_ivf(self.base))
        return 0.0 if self._ivf is None else min(nprobe, self._ivf.nlist) * self._ivf.ntotal / self._ivf.nlist

    def _fetch_size(self, k: int, depth: int) -> int:
        """Candidates the codes' search returns: the re-rank's depth, at least k, at most the base."""
        return min(max(k, depth), len(self.base_ids))

    def _rerank_depth(self, retry: bool = False) -> int:
        if self.rows is None or self.factory == EXACT_FACTORY or not self.rerank:
            return 0
        return max(self.rerank, self.retry_rerank) if retry else self.rerank

    def _rerank(self, queries: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact scores for each query's candidates (their float16 vectors read from `rows`), best k."""
        out_ids = np.full((len(queries), k), -1, np.int64)
        out_scores = np.full((len(queries), k), -np.inf, np.float32)
        for row, (query, found) in enumerate(zip(queries, ids)):
            found = found[found >= 0]
            scores = self.rows.take(np.searchsorted(self.base_ids, found)) @ query
            best = np.argsort(-scores, kind="stable")[:k]
            out_ids[row, :len(best)], out_scores[row, :len(best)] = found[best], scores[best]
        return out_ids, out_scores

    def _search_params(self, nprobe: int):
        """Search parameters hiding masked base ids, per nprobe; rebuilt only when the mask changes."""
        if self._params is None:
            self._params = {}
        if nprobe not in self._params:
            masked = np.fromiter(self.masked, np.int64)
            selector = faiss.IDSelectorNot(faiss.IDSelectorBatch(masked)) if len(masked) else None
            params = (faiss.SearchParametersIVF(sel=selector, nprobe=nprobe)
                      if self.factory != EXACT_FACTORY else faiss.SearchParameters(sel=selector))
            graph = faiss.SearchParametersHNSW(efSearch=2 * nprobe) if "_HNSW" in self.factory else None
            if graph is not None:  # FAISS's graph looks max(efSearch, nprobe) far: twice the lists wanted, for
                params.quantizer_params = graph  # better lists (2x against 1x not measured)
            params._keep = (masked, selector, graph)  # SWIG holds raw pointers: keep the owners alive
            self._params[nprobe] = params
        return self._params[nprobe]


def openmp_threads() -> int:
    """FAISS's OpenMP threads for parallel work started from the calling thread."""
    return faiss.omp_get_max_threads()


@contextlib.contextmanager
def omp_threads(n: int):
    """FAISS's OpenMP threads for the calling thread only (an OpenMP setting is per thread); 0: as is."""
    if n <= 0:
        yield
        return
    before = openmp_threads()
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


@contextlib.contextmanager
def probes_in_parallel(ivf, on: bool):
    """One query's probed lists split over the OpenMP team while inside (`on`), FAISS's own choice after.
    The setting is the index's, not the thread's. Split searches take turns (each uses every core anyway),
    so two threads never restore each other's setting; a batch searched from another thread meanwhile
    runs the same way, with the same results, only at another speed (implem 14 took a 64-query batch
    1.7x longer)."""
    if not on or ivf is None:
        yield
        return
    field_name, value = (("implem", FAST_SCAN_PROBES_IN_PARALLEL) if isinstance(ivf, faiss.IndexIVFFastScan)
                         else ("parallel_mode", 1))
    with _SPLIT_SEARCHES:
        before = getattr(ivf, field_name)
        setattr(ivf, field_name, value)
        try:
            yield
        finally:
            setattr(ivf, field_name, before)


_SPLIT_SEARCHES = threading.Lock()


def _merge_top_k(parts: list[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Merge (ids, scores) lists from base and delta into the best k per query."""
    ids = np.concatenate([p[0] for p in parts], axis=1)
    scores = np.concatenate([p[1] for p in parts], axis=1)
    if len(parts) > 1 or ids.shape[1] > k:
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        ids, scores = np.take_along_axis(ids, order, 1), np.take_along_axis(scores, order, 1)
    return ids, scores


BUILD_CHUNK = 100_000  # vectors added per call; the builder holds one chunk at a time


def build_store(encoder_id: str, dim: int, ids: np.ndarray, vectors: np.ndarray, params: IndexParams,
                applied_seq: int = 0, scratch: Path | None = None) -> FaissStore:
    """A fresh store over these vectors (an array or a memory map; distinct ids in any order); see
    `build_from_chunks`."""
    ids = np.asarray(ids, np.int64)
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]

    def chunks():
        for start in range(0, len(ids), BUILD_CHUNK):
            yield sorted_ids[start:start + BUILD_CHUNK], vectors[order[start:start + BUILD_CHUNK]]

    def sample(size: int) -> np.ndarray:
        return vectors[np.sort(np.random.default_rng(0).choice(len(ids), size, replace=False))]

    return build_from_chunks(encoder_id, dim, len(ids), chunks(), sample, params, applied_seq, scratch)


def build_from_chunks(encoder_id: str, dim: int, total: int, chunks: Iterable[tuple[np.ndarray, np.ndarray]],
                      sample: Callable[[int], np.ndarray], params: IndexParams, applied_seq: int = 0,
                      scratch: Path | None = None) -> FaissStore:
    """The one way a base is built; trains the IVF quantiser when above the threshold (offline).

    `chunks` yields (ids, vectors) in strictly ascending id order across chunks, at most `total` rows in
    all (fewer when rows vanished after they were counted); `sample(size)` returns `size` training
    vectors. Memory stays bounded whatever N is: one chunk, the training sample (nlist x 64 vectors:
    1.3 GB at 1280 d and 4096 lists), the ids and the codes. The float16 re-rank copies go straight to
    an unlinked file in `scratch` (default: the system's temporary folder, which may be a tmpfs in
    memory: workers, `rebuild-index` and the consistency check pass their cache folder). At 10M x 1280
    they are 24 GiB, which an in-memory copy could never hold."""
    factory = params.factory(total, dim)
    index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        size = min(total, nlist_for(total, params.lists) * TRAIN_PER_LIST, TRAIN_MAX)
        train(index, np.ascontiguousarray(sample(size), np.float32))
    exact = factory == EXACT_FACTORY
    writer = RowsWriter(total, dim, scratch) if not exact and params.rerank else None
    base_ids, n = np.empty(total, np.int64), 0
    with writer or contextlib.nullcontext():  # a failed build closes (and so frees) the rows' file
        for chunk_ids, chunk in chunks:
            chunk_ids = np.asarray(chunk_ids, np.int64)
            if n + len(chunk_ids) > total:
                raise ValueError(f"more than the {total} vectors announced")
            if len(chunk_ids) and (np.any(np.diff(chunk_ids) <= 0) or (n and chunk_ids[0] <= base_ids[n - 1])):
                raise ValueError("chunk ids must ascend strictly")
            chunk = np.ascontiguousarray(chunk, np.float32)
            index.add_with_ids(chunk, chunk_ids)
            if writer is not None:
                writer.append(chunk)
            base_ids[n:n + len(chunk_ids)], n = chunk_ids, n + len(chunk_ids)
    return base_store(encoder_id, dim, index, base_ids[:n].copy() if n < total else base_ids, factory, params,
                      applied_seq, rows=writer.finish() if writer is not None else None, trained_count=n,
                      sized_for=total)


def base_store(encoder_id: str, dim: int, index: faiss.Index, base_ids: np.ndarray, factory: str, params: IndexParams,
               applied_seq: int, rows: FileRows | None, trained_count: int, sized_for: int) -> FaissStore:
    """A store serving a base just made (built, or folded: backends/faiss_fold.py), with an empty delta and
    the search settings `params` give a base sized for `sized_for` vectors (the count its lists were
    chosen for)."""
    exact = factory == EXACT_FACTORY
    nprobe, retry_nprobe = (1, params.retry_nprobe) if exact else params.probes(sized_for)
    return FaissStore(encoder_id, dim, index, base_ids, factory, nprobe, applied_seq, retry_below=params.retry_below,
                      retry_nprobe=retry_nprobe, rerank=0 if exact else params.rerank,
                      retry_rerank=params.retry_rerank, rows=rows, trained_count=trained_count)


def empty_store(encoder_id: str, dim: int) -> FaissStore:
    return build_store(encoder_id, dim, np.zeros(0, np.int64), np.zeros((0, dim), np.float32), IndexParams())


def load_store(directory: Path, expected_encoder_id: str, mmap: bool = False,
               base_dir: Path | None = None) -> FaissStore:
    """Load a saved store; refuse one made by another encoder or one that disagrees with its sidecar.
    With `mmap` the base stays on disk, read-only, its pages shared by every process that maps it.
    `base_dir` holds the base files when they are kept apart from the delta (snapshots)."""
    try:
        manifest = json.loads((directory / SIDECAR_FILE).read_text())
        encoder_id = manifest["encoder_id"]
    except (OSError, ValueError, KeyError) as exc:
        raise IndexCorrupt(f"cannot read index in {directory}: {exc}") from exc
    if encoder_id != expected_encoder_id:
        raise IndexEncoderMismatch(f"index {directory} was built by {encoder_id}, not {expected_encoder_id}")
    try:
        store = _read_files(directory, base_dir or directory, manifest, mmap)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise IndexCorrupt(f"cannot read index in {directory}: {exc}") from exc
    if store.base.d != manifest["dim"] or store.count() != manifest["count"]:
        raise IndexCorrupt(f"index {directory} disagrees with its sidecar")
    return store


def _fast_scan(factory: str) -> bool:
    """4-bit fast-scan codes (`PQ...x4fs`, the default above the threshold): FAISS reads their lists
    into each process's memory even from a mapped file (1.7 GB per worker at 10M); flat codes and
    other IVF lists are mapped and shared between the workers of a host."""
    return re.search(r"PQ\d+x4fs", factory) is not None


def _read_files(directory: Path, base_dir: Path, manifest: dict, mmap: bool) -> FaissStore:
    factory = manifest["factory"]
    flags = (faiss.IO_FLAG_MMAP_IFC if factory == EXACT_FACTORY else faiss.IO_FLAG_MMAP) if mmap else 0
    base = faiss.read_index(str(base_dir / BASE_FILE), flags | (faiss.IO_FLAG_READ_ONLY if mmap else 0))
    base_ids = np.load(base_dir / IDS_FILE, mmap_mode="r" if mmap else None)
    if base.ntotal != len(base_ids):
        raise ValueError("base index and its id list differ in length")
    store = FaissStore(manifest["encoder_id"], manifest["dim"], base, base_ids, factory,
                       manifest.get("nprobe", 1), manifest.get("applied_seq", 0), manifest["index_id"],
                       base_dir / BASE_FILE if mmap else None, manifest.get("retry_below", 0.0),
                       manifest.get("retry_nprobe", 0), manifest.get("rerank", 0), manifest.get("retry_rerank", 0),
                       trained_count=manifest.get("trained_count", 0))
    if store.rerank:
        store.rows = FileRows.open(base_dir / VECTORS_FILE)
        if len(store.rows) != len(base_ids):
            raise ValueError("the re-rank vectors and the id list differ in length")
    if (directory / DELTA_FILE).exists():
        with np.load(directory / DELTA_FILE) as delta:
            store.delta.add_with_ids(np.ascontiguousarray(delta["vectors"], np.float32), delta["ids"])
        store.masked = set(np.load(directory / MASKED_FILE).tolist())
    return store


class _atomic_file:
    """Open a temp file beside `path`; on success fsync and rename it into place."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        fd, self.tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        self.f = os.fdopen(fd, "wb")
        return self.f

    def __exit__(self, exc_type, *_):
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()
        if exc_type is None:
            os.replace(self.tmp, self.path)
        else:
            os.unlink(self.tmp)


def _atomic_write(path: Path, data: bytes) -> None:
    with _atomic_file(path) as f:
        f.write(data)
