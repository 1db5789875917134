"""`python -m training rebuild-index`: embed every live source image with an encoder and build the
index of its vectors, with a sidecar naming that encoder. The database keeps the vectors (per encoder),
so the serving encoder is untouched until the new pair is published."""
import argparse
import re
from datetime import datetime, timezone
from pathlib import Path

import torch
from tqdm import tqdm

from common.db.session import new_session
from common.settings import get_settings
from common.storage import get_storage
from core.encoder import load_encoder
from indexing.embedding import count_missing_vectors, embed_missing
from indexing.store import build_from_database, index_params


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training rebuild-index", description=__doc__)
    parser.add_argument("--encoder", default=None, help="encoder spec or artefact dir (default: settings)")
    parser.add_argument("--out", type=Path, default=None, help="index directory (default: under artifacts/pairs)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return parser.parse_args(argv)


def default_index_dir(artifacts_dir: Path, encoder_id: str) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return artifacts_dir / "pairs" / f"{stamp}-{re.sub(r'[^A-Za-z0-9._-]+', '_', encoder_id)}" / "index"


def rebuild_index(encoder_spec: str, out: Path | None = None, batch_size: int | None = None,
                  device: str = "cpu") -> Path:
    """Embed what lacks a vector from this encoder, build its index, save it; returns the directory."""
    settings = get_settings()
    torch.set_num_threads(settings.torch_threads)
    encoder = load_encoder(encoder_spec, device)
    batch_size = batch_size or settings.embed_batch_size
    out = out or default_index_dir(settings.artifacts_dir, encoder.encoder_id)
    with new_session() as session:
        # Batches commit as they go: after a crash, a rerun skips what has a vector and resumes.
        missing = count_missing_vectors(session, encoder.encoder_id)
        with tqdm(total=missing, desc="embedding source images", unit="img") as bar:
            embed_missing(session, encoder, get_storage(settings), batch_size, bar.update)
        store = build_from_database(session, encoder.encoder_id, encoder.dim, index_params(settings),
                                    scratch=settings.cache_dir)
    store.save(out)
    print(f"index {store.index_id} ({store.factory}): {store.count()} vectors from {encoder.encoder_id} -> {out}")
    return out


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    rebuild_index(args.encoder or get_settings().encoder, args.out, args.batch_size, args.device)
    return 0
