"""Mapped encoders (core.mapping): a map on top of a mapped base chains through the base's own query
map, because the stored query vectors the new maps were fitted on came through it."""
import numpy as np
from PIL import Image

from core.encoder import load_encoder
from core.mapping import map_vectors
from training.retrain_verdicts import write_mapped_artefact


def random_map(dim: int, seed: int) -> np.ndarray:
    return (np.eye(dim) + 0.3 * np.random.default_rng(seed).standard_normal((dim, dim))).astype(np.float32)


def test_a_map_on_a_mapped_base_chains_the_query_maps(tmp_path):
    base = load_encoder("builtin:efficientnet-lite0")
    first = {"real": random_map(base.dim, 0), "synth": random_map(base.dim, 1)}
    second = {"real": random_map(base.dim, 2), "synth": random_map(base.dim, 3)}
    write_mapped_artefact(tmp_path / "one", "builtin:efficientnet-lite0", base, first, {})
    once = load_encoder(str(tmp_path / "one"))
    write_mapped_artefact(tmp_path / "two", str(tmp_path / "one"), once, second, {})
    twice = load_encoder(str(tmp_path / "two"))

    image = [Image.new("RGB", (64, 48), (200, 120, 40))]
    plain = base.embed(image)
    expected_query = map_vectors(map_vectors(plain, first["synth"]), second["synth"])
    expected_source = map_vectors(map_vectors(plain, first["real"]), second["real"])
    np.testing.assert_allclose(twice.embed(image, role="query"), expected_query, atol=1e-4)
    np.testing.assert_allclose(twice.embed(image), expected_source, atol=1e-4)
