"""Folding a FAISS store's changes into its base, instead of building a new base from the database.

A base is rebuilt when the changes beside it (the exact delta, scanned whole by every query, and the
mask of replaced or deleted base vectors) pass `compact_after`. A rebuild from the database reads every
vector again and trains the quantiser again: 207 s at 1M on the 2-core Intel VM (twice that niced
beside the jobs) and 19-77 minutes at 10M, during which a steady import keeps growing the delta. The
changes alone are what is new, and the quantiser trained on a sample of the base still describes a
registry of about the same size. So a fold:
- copies the base index (a clone of one built in this process; one read from its file, without
  mapping, when it was loaded: FAISS cannot clone mapped lists, and a mapped `IDMap2,Flat` crashes);
- removes the masked ids from it and adds the delta's vectors, encoded with the trained quantiser;
- writes the float16 re-rank rows of the new base in id order: the old rows, read in order a chunk at
  a time, with the masked ones left out and the delta's placed among them (linear in N, one pass).
Its cost grows with N only by those copies, never by reading the database or training.

`can_fold` says when a fold keeps the base the runtime would build: the same index type for the new
count (the same number of lists, codes and exactness), the re-rank rows the settings ask for, and a
count within `retrain_growth` of the count the quantiser was trained on (a registry that doubled is
trained again, from the database, which also reconciles anything a worker's store missed)."""
import faiss
import numpy as np

from indexing.backends.exact_rows import FileRows, RowsWriter
from indexing.backends.faiss import (
    BUILD_CHUNK,
    EXACT_FACTORY,
    FaissStore,
    IndexParams,
    StoreState,
    base_store,
)


def can_fold(store: FaissStore, params: IndexParams) -> bool:
    """True when folding this store's changes gives the base a rebuild would give, but for the training."""
    count = store.count()
    if params.retrain_growth < 1 or not len(store.base_ids) or store.factory != params.factory(count, store.dim):
        return False
    exact = store.factory == EXACT_FACTORY
    if not exact and (store.rows is not None) != bool(params.rerank):
        return False  # re-ranking switched on or off since the base was built: its rows must be (un)made
    trained = store.trained_on()
    return exact or max(count, trained) <= params.retrain_growth * min(count, trained)


def fold(store: FaissStore, state: StoreState, params: IndexParams, scratch=None) -> FaissStore:
    """A new store whose base holds `store`'s base as of `state` (`store.state()`) with its changes
    merged in, and an empty delta, at `state`'s log position (the caller replays the tail). `store`'s
    base is only read: it keeps serving meanwhile. `scratch` takes the new re-rank rows (as in
    `build_from_chunks`)."""
    masked = np.asarray(state.masked, np.int64)
    keep = ~np.isin(store.base_ids, masked)
    order = np.argsort(state.delta_ids, kind="stable")
    delta_ids, delta_vectors = state.delta_ids[order], state.delta_vectors[order]
    ids = np.concatenate([store.base_ids[keep], delta_ids])
    placed = np.argsort(ids, kind="stable")  # output row -> row of `ids` (kept base rows first, then the delta)
    ids = ids[placed]
    if len(ids) > 1 and np.any(np.diff(ids) <= 0):
        raise ValueError("a delta id is also a live base id: the store's mask is inconsistent")

    index = _writable_copy(store)
    if len(masked):
        index.remove_ids(faiss.IDSelectorBatch(masked))
    for start in range(0, len(delta_ids), BUILD_CHUNK):
        index.add_with_ids(np.ascontiguousarray(delta_vectors[start:start + BUILD_CHUNK], np.float32),
                           delta_ids[start:start + BUILD_CHUNK])
    if index.ntotal != len(ids):
        raise ValueError(f"the folded index holds {index.ntotal} vectors, expected {len(ids)}")

    rows = None
    if store.rows is not None and store.factory != EXACT_FACTORY:
        rows = _merged_rows(store, np.flatnonzero(keep), placed, delta_vectors, scratch)
    return base_store(store.encoder_id, store.dim, index, ids, store.factory, params, state.applied_seq, rows,
                      trained_count=store.trained_on(), sized_for=len(ids))


def _writable_copy(store: FaissStore) -> faiss.Index:
    """A copy of the base this process may change: read again from its file when it was loaded from one
    (mapped lists cannot be cloned), else cloned in memory."""
    if store.base_path is not None:
        return faiss.read_index(str(store.base_path))
    return faiss.clone_index(store.base)


def _merged_rows(store: FaissStore, kept_rows: np.ndarray, placed: np.ndarray, delta_vectors: np.ndarray,
                 scratch) -> FileRows:
    """The new base's float16 rows in id order, written straight to an unlinked file (`RowsWriter`).
    Output rows come a chunk at a time; the old rows a chunk needs ascend, so they are read as one span
    (at most the chunk plus the masked rows inside it)."""
    writer = RowsWriter(len(placed), store.dim, scratch)
    with writer:
        for start in range(0, len(placed), BUILD_CHUNK):
            source = placed[start:start + BUILD_CHUNK]
            from_base = source < len(kept_rows)
            chunk = np.empty((len(source), store.dim), np.float16)
            if from_base.any():
                old = kept_rows[source[from_base]]
                chunk[from_base] = store.rows.span(int(old[0]), int(old[-1]) + 1)[old - old[0]]
            if not from_base.all():
                chunk[~from_base] = delta_vectors[source[~from_base] - len(kept_rows)]
            writer.append(chunk)
    return writer.finish()
