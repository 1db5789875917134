"""bench.gpu_embed runs end to end (on the CPU here: a GPU host runs the same code with --device cuda) and
writes a JSON and a table whose ratios come from the runs it made."""
import json

from bench.gpu_embed import main
from tests.factories import photo_bytes


def test_the_gpu_embedding_bench_runs_on_the_cpu_and_writes_its_tables(tmp_path):
    photos = tmp_path / "photos"
    for subject in ("dog", "cat"):
        (photos / subject).mkdir(parents=True)
        (photos / subject / "00.jpg").write_bytes(photo_bytes(subject, 0))
    out = tmp_path / "out"
    assert main(["--device", "cpu", "--images", "8", "--batch", "4", "--rounds", "1", "--pil-images", "4",
                 "--variants", "1:1", "1:1:loop:nostream:wide:fwdstream", "--processes", "1", "--photos", str(photos), "--work", str(tmp_path / "work"),
                 "--out", str(out)]) == 0
    result = json.loads((out / "gpu-embed.json").read_text())
    assert set(result["sets"]) == {"512", "1024"} and result["sets"]["1024"]["images"] == 4
    for data in result["sets"].values():
        summary = data["summary"]
        assert summary["bare_images_per_s"] > 0 and summary["path_over_bare"] > 0
        assert summary["path_1_readers_1_assemblers_over_bare"] > 0 and summary["pil_path_over_bare"] > 0
        assert summary["path_1_readers_1_assemblers_loop_nostream_wide_fwdstream_over_bare"] > 0
        assert summary["path_1_processes_prototype_over_bare"] > 0  # spawned decoders hand back their batches
        assert data["rounds"][0]["path"]["failed"] == 0
    table = (out / "gpu-embed.md").read_text()
    assert "| 1 readers 1 assemblers |" in table and "| 1 processes prototype |" in table
