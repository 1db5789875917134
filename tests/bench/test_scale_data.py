"""The padded base of the scale benches is reused only when complete: a run killed while writing it
left a file of the full size (a memmap is sized up front) with zero rows, which the next run took for
a finished one and measured."""
import numpy as np
import pytest

from bench import scale_data
from tests.indexing.test_faiss_store import unit_rows


def test_a_padded_base_cut_short_is_written_again(tmp_path, monkeypatch):
    real, path = unit_rows(100, 8), tmp_path / "base.f32"
    sample, calls = scale_data.Mixture.sample, []

    def dies_on_the_second_chunk(self, n, rng):
        calls.append(n)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the operator's ^C
        return sample(self, n, rng)
    monkeypatch.setattr(scale_data.Mixture, "sample", dies_on_the_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        scale_data.padded_base(real, 300, path, chunk=50)
    monkeypatch.setattr(scale_data.Mixture, "sample", sample)
    base = scale_data.padded_base(real, 300, path, chunk=50)
    assert np.allclose(np.linalg.norm(base, axis=1), 1.0, atol=1e-5)  # no zero rows left from the cut run
    assert np.array_equal(base[:100], real)
