"""One simulated worker start for bench/scale.py, in its own process: load the newest snapshot
(memory-mapped) from a local storage root, answer queries, report times and memory as JSON.

    python -m bench.scale_probe STORAGE_ROOT ENCODER_ID QUERIES.npy [--hold SECONDS] [--with-model]

--with-model also loads the default encoder and embeds one image first, as a worker holds it, so the
memory reported is a whole worker's (issue 8: PSS <= 2 GB per worker with two sharing one snapshot)."""
import json
import sys
import time
from pathlib import Path

import numpy as np


def memory() -> dict:
    """RSS and PSS (shared pages split between the processes mapping them) in MB."""
    fields = {}
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split(":", 1)
        fields[name] = int(value.split()[0]) / 1024
    return {"rss_mb": round(fields["Rss"], 1), "pss_mb": round(fields["Pss"], 1)}


def main(argv: list[str]) -> None:
    root, encoder_id, queries_path = Path(argv[0]), argv[1], Path(argv[2])
    hold = float(argv[argv.index("--hold") + 1]) if "--hold" in argv else 0.0
    model = _load_model() if "--with-model" in argv else {}
    started = time.perf_counter()
    from common.storage import storage_from
    from indexing.snapshots import load_snapshot
    imported = time.perf_counter()
    store, _ = load_snapshot(storage_from(str(root)), encoder_id, root.parent / "cache")
    loaded = time.perf_counter()
    queries = np.load(queries_path)
    for query in queries:
        store.search(query[None], 40)
    served = time.perf_counter()
    time.sleep(hold)  # let the other probe reach the same point before memory is read
    print(json.dumps({"import_s": round(imported - started, 3), "load_s": round(loaded - imported, 3),
                      "first_queries_s": round(served - loaded, 3), "queries": len(queries),
                      "count": store.count(), **model, **memory()}))


def _load_model() -> dict:
    """The worker's encoder, loaded and run once (its weights and first activations are resident)."""
    from PIL import Image

    from common.settings import Settings
    from core.encoder import load_encoder
    started = time.perf_counter()
    encoder = load_encoder(Settings().encoder)
    encoder.embed([Image.new("RGB", (320, 240), (120, 90, 60))])
    _MODELS.append(encoder)  # kept alive until memory is read
    return {"model": encoder.encoder_id, "model_load_s": round(time.perf_counter() - started, 2)}


_MODELS: list = []


if __name__ == "__main__":
    main(sys.argv[1:])
