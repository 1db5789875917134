"""The padded base of the scale benches is reused only when complete: a run killed while writing it
left a file of the full size (a memmap is sized up front) with zero rows, which the next run took for
a finished one and measured. The held-out queries are the labelled traffic half of the features."""
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


def test_held_out_queries_are_the_labelled_traffic_half_of_the_extra_features(tmp_path, monkeypatch):
    """The traffic queries' features sit in `extra` in collect_paths's order, among DreamBooth photos;
    a cache made from another set is refused instead of pairing features with the wrong labels."""
    import json

    from bench.scale_data import RealFeatures, held_out_queries
    extra_paths = [tmp_path / "traffic" / "a.jpg", tmp_path / "dreambooth" / "cat" / "00.jpg",
                   tmp_path / "traffic" / "b.jpg", tmp_path / "traffic" / "c.jpg"]
    (tmp_path / "traffic_labels.json").write_text(json.dumps(
        {"a.jpg": {"subject": "dog"}, "b.jpg": {"subject": "cat"}, "c.jpg": {"subject": "gone"}}))
    monkeypatch.setattr(scale_data, "collect_paths", lambda root: ([], extra_paths, [], [], []))
    extra = np.arange(4 * 2, dtype=np.float32).reshape(4, 2)
    real = RealFeatures(np.zeros((2, 2)), extra, np.zeros((0, 2)), np.zeros(0, int), np.arange(2), ["cat", "dog"])
    features, subject = held_out_queries(tmp_path, real)
    assert features.tolist() == [extra[0].tolist(), extra[2].tolist()]  # c.jpg's subject is not registered
    assert subject.tolist() == [1, 0]
    with pytest.raises(ValueError, match="does not match"):
        held_out_queries(tmp_path, RealFeatures(real.base, extra[:3], real.queries, real.query_subject,
                                                real.exemplar_rows, real.subjects))
