"""The worker's embedding path on a GPU against the bare forward (issue 8: the real path >= 60 % of the bare
forward, the card recorded).

    PYTHONPATH=. python -m bench.gpu_embed [--device cuda] [--images 8192] [--out bench/results/gpu-embed]

Stages, run in interleaved rounds so that each ratio compares minutes of the same machine:
- **bare**: `Encoder.embed_tensor` (forward, normalise, vectors to the host) on preprocessed batches already
  on the device, channels_last as the worker sets it.
- **path**: what `worker.batch_embed` does per job without the database: stored JPEG files read by the
  Feeder that `core.pipeline.make_feeder` gives a worker on this device (on a GPU: decoded by nvJPEG and
  preprocessed there), then the same `embed_tensor`. Also with other numbers of assembler threads, and
  the Pillow path (`gpu_decode` off) that a GPU worker fell back to before.
- **parts**: the GPU decoder alone (bytes in memory, one thread) and the readers alone (file read and the
  plain-JPEG check), to say which stage bounds the path when it falls short.
- **prototypes** (not the worker's code, only on request): decoding in spawned processes that hand batches
  back through CUDA IPC (`--processes`), and nvImageCodec reading and decoding in its own threads
  (`--nvimgcodec`, `--nvimgcodec-hardware`). Both ran slower than the worker's path (README, Scaling).

Images: JPEGs made from the DreamBooth photos (`--photos`), 320-512 px wide as in `bench.ingest`, and a
set 768-1024 px wide. Needs torch, torchvision, timm, Pillow and the packaged Lite0 weights, not the
service's other packages, so that it runs on a bare GPU machine. Writes `gpu-embed.json` and
`gpu-embed.md`; `python -m bench.gpu_embed --plot DIR` draws `gpu-embed.png` from the JSON."""
import argparse
import contextlib
import itertools
import json
import os
import platform
import random
import statistics
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

PHOTOS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dreambooth"
SETS = {"512": (320, 512), "1024": (768, 1024)}


def _make_share(args) -> list[str]:
    photos, out, first, count, sides, seed = args
    from PIL import Image

    from bench.photo_variants import jpeg_quality, photo_variant
    rng, sources = random.Random(seed + first), []
    for path in photos:
        image = Image.open(path)
        image.draft("RGB", (1200, 1200))  # a fast decode at the size the variants need at most
        sources.append(image.convert("RGB"))
    made = []
    for i in range(first, first + count):
        path = out / f"{i:06d}.jpg"
        photo_variant(rng.choice(sources), rng, sides).save(path, "JPEG", quality=jpeg_quality(rng))
        made.append(path.name)
    return made


def make_images(photos: Path, out: Path, count: int, sides: tuple[int, int], seed: int = 0) -> list[str]:
    """`count` distinct JPEG files under `out` (random crop, flip, colour, width in `sides`, quality)."""
    out.mkdir(parents=True, exist_ok=True)
    sources = sorted(photos.glob("*/*.jpg"))
    if not sources:
        raise SystemExit(f"no photos under {photos} (--photos)")
    procs = max(1, min(16, os.cpu_count() or 1))
    step = -(-count // procs)
    shares = [(sources, out, first, min(step, count - first), sides, seed) for first in range(0, count, step)]
    with ProcessPoolExecutor(procs) as pool:
        return [name for made in pool.map(_make_share, shares) for name in made]


def machine(torch) -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    import torchvision
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "torchvision": torchvision.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "python": platform.python_version(), "date": datetime.now(timezone.utc).isoformat()}


_PROCESS = {}


def _process_init(root: str, device: str, preprocess) -> None:
    import torch

    from common.storage import storage_from
    from core.preprocess import TensorDecoder
    torch.set_num_threads(1)
    _PROCESS.update(storage=storage_from(root), decoder=TensorDecoder(preprocess, device))


def _process_decode(keys: list[str]):
    from core.preprocess import plain_jpeg
    blobs = [_PROCESS["storage"].get(key) for key in keys]
    assert all(plain_jpeg(blob) for blob in blobs)
    return _PROCESS["decoder"](blobs)


def _nvimgcodec():
    """nvidia.nvimgcodec, also where it was unpacked beside a Python whose `nvidia` package hides it
    (NVIMGCODEC_DIR: the folder holding nvimgcodec/)."""
    try:
        from nvidia import nvimgcodec
        return nvimgcodec
    except ImportError:
        import importlib.util
        folder = Path(os.environ["NVIMGCODEC_DIR"]) / "nvimgcodec"
        spec = importlib.util.spec_from_file_location("nvidia.nvimgcodec", folder / "__init__.py",
                                                      submodule_search_locations=[str(folder)])
        module = importlib.util.module_from_spec(spec)
        sys.modules["nvidia.nvimgcodec"] = module
        spec.loader.exec_module(module)
        return module


class Bench:
    def __init__(self, device: str, batch: int, root: Path):
        import torch

        from common.storage import storage_from
        from core.encoder import load_encoder
        self.torch, self.device, self.batch = torch, device, batch
        self.encoder = load_encoder("builtin:efficientnet-lite0", device).use_channels_last(True)  # as worker.runtime
        self.storage_root = root
        self.storage = storage_from(str(root))  # the files as a worker reads them, through the storage interface

    def sync(self) -> None:
        if self.device.startswith("cuda"):
            self.torch.cuda.synchronize()

    def items(self, keys: list[str]):
        storage = self.storage
        return [(i, (lambda key=key: storage.get(key))) for i, key in enumerate(keys)]

    def ready_batches(self, keys: list[str]) -> list:
        """Preprocessed batches on the device (made once, by the reference Pillow path)."""
        from core.pipeline import Feeder
        feeder = Feeder(self.encoder.preprocess, self.device, workers=os.cpu_count() or 1)
        try:
            batches = list(feeder.batches(self.items(keys), self.batch))
        finally:
            feeder.close()
        failed = {i: reason for b in batches for i, reason in b.failed.items()}
        if failed:
            raise RuntimeError(f"{len(failed)} of {len(keys)} images failed, e.g. {next(iter(failed.values()))}")
        return [b.tensor for b in batches]

    def bare(self, ready: list, images: int) -> float:
        """images/s of embed_tensor on ready batches, cycled until `images` were embedded."""
        self.sync()
        started, done, i = time.perf_counter(), 0, 0
        while done < images:
            batch = ready[i % len(ready)]
            self.encoder.embed_tensor(batch)
            done, i = done + len(batch), i + 1
        self.sync()
        return done / (time.perf_counter() - started)

    def path(self, keys: list[str], forward_stream: bool = False, **feeder_args) -> dict:
        """images/s of the worker's read -> decode -> forward loop over stored files. `forward_stream`: the
        forward runs on a CUDA stream of its own instead of the legacy default stream, with which other
        streams' work (a decoder's that uses stream 0 inside) would otherwise serialise."""
        from core.pipeline import Feeder, make_feeder
        feeder = (Feeder(self.encoder.preprocess, self.device, **feeder_args) if feeder_args
                  else make_feeder(self.encoder.preprocess, self.device))
        use_stream = forward_stream and self.device.startswith("cuda")
        with self.torch.cuda.stream(self.torch.cuda.Stream()) if use_stream else contextlib.nullcontext():
            return self._path(keys, feeder)

    def _path(self, keys: list[str], feeder) -> dict:
        try:
            self.sync()
            started, done, failed, waited = time.perf_counter(), 0, 0, 0.0
            batches = feeder.batches(self.items(keys), self.batch)
            while True:
                asked = time.perf_counter()
                batch = next(batches, None)
                waited += time.perf_counter() - asked
                if batch is None:
                    break
                if batch.ids:
                    self.encoder.embed_tensor(batch.tensor)
                done, failed = done + len(batch.ids), failed + len(batch.failed)
            self.sync()
            seconds = time.perf_counter() - started
        finally:
            feeder.close()
        return {"images_per_s": done / seconds, "failed": failed, "waiting_for_batches_pct": 100 * waited / seconds,
                "assemblers": feeder.assemblers, "workers": feeder.workers, "gpu_decode": feeder.decoder is not None}

    def path_processes(self, keys: list[str], processes: int, chunk: int = 64) -> dict:
        """images/s of a prototype that is not the worker's code: `processes` spawned processes each read,
        check, decode and resize `chunk` images on the device (their own CUDA context, their own GIL) and
        hand the batch back through CUDA IPC; this process only concatenates and runs the forward. It
        measures how far the path goes once the per-image Python work leaves the forward's process."""
        import torch.multiprocessing as mp
        torch = self.torch
        context = mp.get_context("spawn")
        pool = context.Pool(processes, initializer=_process_init,
                            initargs=(str(self.storage_root), self.device, self.encoder.preprocess))
        try:
            pool.map_async(_process_decode, [keys[:chunk]] * processes).get(timeout=300)  # CUDA up first
            per_batch = max(1, self.batch // chunk)
            chunks = [keys[i:i + chunk] for i in range(0, len(keys), chunk)]
            self.sync()
            started, done, pending, queued = time.perf_counter(), 0, [], iter(chunks)
            for part in itertools.islice(queued, 2 * processes):
                pending.append(pool.apply_async(_process_decode, (part,)))
            while pending:
                parts = [pending.pop(0).get(timeout=120) for _ in range(min(per_batch, len(pending)))]
                for part in itertools.islice(queued, len(parts)):
                    pending.append(pool.apply_async(_process_decode, (part,)))
                batch = torch.cat(parts) if len(parts) > 1 else parts[0].clone()
                del parts
                self.encoder.embed_tensor(batch)
                done += len(batch)
            self.sync()
            seconds = time.perf_counter() - started
        finally:
            pool.terminate()
            pool.join()
        return {"images_per_s": done / seconds, "processes": processes, "chunk": chunk}

    def path_nvimgcodec(self, keys: list[str], check: bool = False, hardware: bool = False) -> dict:
        """images/s of a prototype that is not the worker's code: nvImageCodec reads and decodes each batch
        of files in its own native threads (no Python per image for reading, checking or decoding), then
        TensorDecoder's batched resize, the forward here. Two threads prepare batches ahead, each on a
        CUDA stream of its own. `check`: also the largest difference from TensorDecoder's tensors.
        `hardware`: the JPEG hardware engine first (it failed in a gVisor sandbox), else the CUDA decoders."""
        from collections import deque

        from core.preprocess import TensorDecoder
        torch, nvimgcodec = self.torch, _nvimgcodec()
        backends = [nvimgcodec.Backend(nvimgcodec.GPU_ONLY), nvimgcodec.Backend(nvimgcodec.HYBRID_CPU_GPU)]
        if hardware:
            backends.insert(0, nvimgcodec.Backend(nvimgcodec.HW_GPU_ONLY))
        resize = TensorDecoder(self.encoder.preprocess, self.device)
        paths = [str(self.storage_root / key) for key in keys]
        chunks = [paths[i:i + self.batch] for i in range(0, len(paths), self.batch)]
        local = threading.local()

        def prepare(chunk):
            if not hasattr(local, "stream"):  # a decoder per thread: one decoder serves one stream
                local.stream, local.decoder = torch.cuda.Stream(), nvimgcodec.Decoder(backends=backends)
            stream, decoder = local.stream, local.decoder
            with torch.cuda.stream(stream):
                images = decoder.read(chunk, cuda_stream=stream.cuda_stream)
                tensors = [torch.as_tensor(image, device=self.device).permute(2, 0, 1) for image in images]
                batch = (resize._resize_batch(tensors).clamp_(0, 255).round_() - resize.mean) / resize.std
                stream.synchronize()
            return batch
        result, first = {}, prepare(chunks[0])  # also the warm-up (decoders, streams, axis matrices)
        if check:
            difference = (first - resize([self.storage.get(key) for key in keys[:self.batch]])).abs()
            result["max_difference_from_tensor_decoder"] = float(difference.max())
            result["mean_difference_from_tensor_decoder"] = float(difference.mean())
        self.sync()
        started, done, pending = time.perf_counter(), 0, deque()

        def embed(batch) -> int:
            batch.record_stream(torch.cuda.current_stream())  # made on a preparing thread's stream
            self.encoder.embed_tensor(batch)
            return len(batch)
        with ThreadPoolExecutor(2) as pool:
            for chunk in chunks:
                pending.append(pool.submit(prepare, chunk))
                if len(pending) > 2:
                    done += embed(pending.popleft().result())
            while pending:
                done += embed(pending.popleft().result())
        self.sync()
        return {**result, "images_per_s": done / (time.perf_counter() - started)}

    def decoder_alone(self, keys: list[str], threads: int = 1, batched_resize: bool = True) -> float:
        """images/s of TensorDecoder on batches of bytes in memory, `threads` batches at a time."""
        from core.preprocess import TensorDecoder
        decoder = TensorDecoder(self.encoder.preprocess, self.device, batched_resize)
        blobs = [self.storage.get(key) for key in keys]
        chunks = [blobs[i:i + self.batch] for i in range(0, len(blobs), self.batch)]
        decoder(chunks[0])
        self.sync()
        started = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(decoder, chunks))
        self.sync()
        return len(blobs) / (time.perf_counter() - started)

    def readers_alone(self, keys: list[str], workers: int | None = None, pathlib: bool = False) -> float:
        """images/s of reading stored files and checking them for the GPU decoder, in `workers` threads
        (`pathlib`: read with Path.read_bytes, as the local backend did before)."""
        from core.preprocess import plain_jpeg
        workers = workers or os.cpu_count() or 1
        get = (lambda key: (self.storage_root / key).read_bytes()) if pathlib else self.storage.get  # files it made

        def read(key):
            data = get(key)
            return plain_jpeg(data)
        with ThreadPoolExecutor(workers) as pool:
            started = time.perf_counter()
            plain = sum(pool.map(read, keys))
            seconds = time.perf_counter() - started
        assert plain == len(keys), "every generated image should be a plain JPEG"
        return len(keys) / seconds


def run(args) -> dict:
    import torch
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: pass --device cpu for a dry run")
    root = args.work / "storage"
    keys = {}
    for name, sides in SETS.items():
        count = args.images if name == "512" else args.images // 2
        started = time.perf_counter()
        names = make_images(args.photos, root / f"images-{name}", count, sides)
        keys[name] = [f"images-{name}/{n}" for n in names]
        print(f"made {count} JPEGs {sides[0]}-{sides[1]} px wide in {time.perf_counter() - started:.1f} s", flush=True)
    bench = Bench(args.device, args.batch, root)
    result = {"command": "python -m bench.gpu_embed " + " ".join(args.argv), "machine": machine(torch),
              "device": args.device, "batch": args.batch, "rounds": args.rounds, "sets": {}}
    ready = bench.ready_batches(keys["512"][:4 * args.batch])
    bench.bare(ready, 2 * args.batch)  # warm-up (kernels, allocator)
    bench.path(keys["512"][:2 * args.batch])
    for name, set_keys in keys.items():
        rounds = []
        for r in range(args.rounds):
            row = {"bare": bench.bare(ready, len(set_keys))}
            for interval in args.switch_intervals:  # Python's GIL switch interval, in ms (5 by default)
                sys.setswitchinterval(interval / 1000)
                suffix = "" if interval == 5 else f"_switch_{interval}ms"
                row["path" + suffix] = bench.path(set_keys)
                for variant in args.variants:  # other thread counts than make_feeder's, or a part switched off
                    workers, assemblers, *off = variant.split(":")
                    key = f"path_{workers}_readers_{assemblers}_assemblers{''.join('_' + o for o in off)}{suffix}"
                    with batch_side(4096 if "wide" in off else None):
                        row[key] = attempt(
                            bench.path, set_keys, workers=int(workers), tensor_decode=args.device.startswith("cuda"),
                            assemblers=int(assemblers), batched_resize="loop" not in off,
                            side_streams="nostream" not in off, forward_stream="fwdstream" in off)
            sys.setswitchinterval(0.005)
            if args.nvimgcodec:
                row["path_nvimgcodec_prototype"] = attempt(bench.path_nvimgcodec, set_keys, r == 0)
            if args.nvimgcodec_hardware:
                row["path_nvimgcodec_hardware_prototype"] = attempt(bench.path_nvimgcodec, set_keys, r == 0, True)
            for processes in args.processes:
                row[f"path_{processes}_processes_prototype"] = attempt(bench.path_processes, set_keys, processes)
            if r == 0 and args.pil_images:  # a part that fails is recorded, and the rest still runs
                row["pil_path"] = attempt(bench.path, set_keys[:args.pil_images], workers=os.cpu_count() or 1)
            if r == 0 and args.parts:
                row["decoder_alone"] = attempt(bench.decoder_alone, set_keys[:8 * args.batch])
                row["decoder_alone_4_threads"] = attempt(bench.decoder_alone, set_keys[:8 * args.batch], 4)
                row["decoder_alone_loop"] = attempt(bench.decoder_alone, set_keys[:8 * args.batch], 1, False)
                row["readers_alone"] = attempt(bench.readers_alone, set_keys)
                row["readers_alone_4_threads"] = attempt(bench.readers_alone, set_keys, 4)
                row["readers_alone_2_threads"] = attempt(bench.readers_alone, set_keys, 2)
                row["readers_alone_2_threads_pathlib"] = attempt(bench.readers_alone, set_keys, 2, True)
            row["bare_after"] = bench.bare(ready, len(set_keys))
            print(name, r, json.dumps(row), flush=True)
            rounds.append(row)
        result["sets"][name] = {"images": len(set_keys), "widths": SETS[name], "rounds": rounds,
                                "summary": summarise(rounds)}
        write(result, args.out)
    return result


@contextlib.contextmanager
def batch_side(side: int | None):
    """Variant suffix "wide": images up to `side` px resized in batched products too (core.preprocess)."""
    import core.preprocess
    kept = core.preprocess.BATCH_SIDE
    core.preprocess.BATCH_SIDE = side or kept
    try:
        yield
    finally:
        core.preprocess.BATCH_SIDE = kept


def attempt(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        print(f"{fn.__name__} failed: {type(exc).__name__}: {exc}", flush=True)
        return {"error": f"{type(exc).__name__}: {exc}"}


def _rate(value) -> float | None:
    value = value.get("images_per_s") if isinstance(value, dict) else value
    return float(value) if isinstance(value, (int, float)) else None


def summarise(rounds: list[dict]) -> dict:
    """Medians over rounds; each path ratio is against the mean of the bare runs just before and after it."""
    def rates(key):
        return [(_rate(row[key]), (row["bare"] + row["bare_after"]) / 2) for row in rounds
                if key in row and _rate(row[key]) is not None]
    keys = [k for k in rounds[0] if k.startswith(("path", "pil_path")) and rates(k)]
    return {"bare_images_per_s": statistics.median(v for row in rounds for v in (row["bare"], row["bare_after"])),
            **{f"{k}_images_per_s": statistics.median(r for r, _ in rates(k)) for k in keys},
            **{f"{k}_over_bare": statistics.median(r / b for r, b in rates(k)) for k in keys},
            "decoder_alone_images_per_s": _rate(rounds[0].get("decoder_alone")),
            "decoder_alone_4_threads_images_per_s": _rate(rounds[0].get("decoder_alone_4_threads")),
            "decoder_alone_loop_images_per_s": _rate(rounds[0].get("decoder_alone_loop")),
            "readers_alone_4_threads_images_per_s": _rate(rounds[0].get("readers_alone_4_threads")),
            "readers_alone_2_threads_images_per_s": _rate(rounds[0].get("readers_alone_2_threads")),
            "readers_alone_2_threads_pathlib_images_per_s": _rate(rounds[0].get("readers_alone_2_threads_pathlib")),
            "readers_alone_images_per_s": _rate(rounds[0].get("readers_alone"))}


def write(result: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu-embed.json").write_text(json.dumps(result, indent=2))
    (out / "gpu-embed.md").write_text(markdown(result))


def markdown(result: dict) -> str:
    m = result["machine"]

    def cell(value, digits=0):
        return "-" if value is None else f"{value:.{digits}f}"
    lines = [f"# Embedding path vs bare forward on {m['cuda'] or m['cpu']}", "",
             f"{m['cores']} CPU cores ({m['cpu']}), torch {m['torch']}, torchvision {m['torchvision']}, "
             f"batch {result['batch']}, EfficientNet-Lite0 fp32 channels_last, {result['rounds']} interleaved rounds "
             f"(medians), {m['date'][:10]}. Command: `{result['command']}`.", "",
             "| images | bare images/s | worker path images/s | path / bare | Pillow path / bare | "
             "GPU decoder alone | same, resized image by image | readers alone |", "|---|---|---|---|---|---|---|---|"]
    for data in result["sets"].values():
        s = data["summary"]
        lines.append(f"| {data['images']} JPEGs {data['widths'][0]}-{data['widths'][1]} px | "
                     f"{s['bare_images_per_s']:.0f} | {s['path_images_per_s']:.0f} | **{s['path_over_bare']:.2f}** | "
                     f"{cell(s.get('pil_path_over_bare'), 2)} | {cell(s.get('decoder_alone_images_per_s'))} | "
                     f"{cell(s.get('decoder_alone_loop_images_per_s'))} | "
                     f"{cell(s.get('readers_alone_images_per_s'))} |")
    variants = sorted({k for data in result["sets"].values() for k in data["summary"]
                       if k.startswith("path_") and k.endswith("_over_bare")})
    if variants:
        lines += ["", "| variant (threads, GIL switch interval) | " + " | ".join(
            f"{d['widths'][0]}-{d['widths'][1]} px: path / bare" for d in result["sets"].values()) + " |",
            "|---|" + "---|" * len(result["sets"])]
        for v in variants:
            label = v[len("path"):-len("_over_bare")].strip("_").replace("_", " ")
            label = label if label[:1].isdigit() else f"make_feeder {label}"
            lines.append(f"| {label} | " + " | ".join(
                f"{d['summary'][v]:.2f}" if v in d["summary"] else "-" for d in result["sets"].values()) + " |")
    return "\n".join(lines) + "\n"


def plot(out: Path) -> None:
    """gpu-embed.png: images/s of the main run (gpu-embed.json, the one the README's table reads), and the
    worker path's share of the bare forward in each run kept under runs/ (the code changed between them;
    their .md files say what ran). A run whose default was reverted names, as `plotted_path`, the variant
    that ran the code kept."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    result = json.loads((out / "gpu-embed.json").read_text())
    runs = sorted((out / "runs").glob("*.json"), key=_run_order) if (out / "runs").is_dir() else []
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8)) if runs else plt.subplots(figsize=(6, 3.8))
    left = axes[0] if runs else axes
    names = list(result["sets"])
    kinds = [("bare_images_per_s", "bare forward")] + [
        (k, "worker path, " + (k[5:-12].replace("_", " ") or "make_feeder's threads"))
        for k in result["sets"][names[0]]["summary"] if k.startswith("path") and k.endswith("_images_per_s")]
    width = 0.8 / len(kinds)
    for k, (key, label) in enumerate(kinds):
        values = [result["sets"][n]["summary"].get(key, 0) for n in names]
        bars = left.bar([i + k * width for i in range(len(names))], values, width, label=label)
        left.bar_label(bars, fmt="%.0f", fontsize=7)
    left.set_xticks([i + width * (len(kinds) - 1) / 2 for i in range(len(names))],
                    [f"JPEGs {result['sets'][n]['widths'][0]}-{result['sets'][n]['widths'][1]} px" for n in names])
    left.set_ylabel("images / s")
    left.set_title(f"Main run on {result['machine']['cuda'] or result['machine']['cpu']}", fontsize=9)
    left.legend(fontsize=7)
    if runs:
        right = axes[1]
        data = [json.loads(path.read_text()) for path in runs] + [result]
        labels = [f"{name}\n{(d['machine']['cuda'] or 'CPU').replace('NVIDIA ', '').split()[0]}"
                  for name, d in zip([path.stem.split("-")[0] for path in runs] + ["main"], data)]
        for n in names:
            ratios = [d["sets"][n]["summary"][d.get("plotted_path", "path") + "_over_bare"] for d in data]
            right.plot(labels, ratios, marker="o", label=f"worker path, {n} px set")
        right.axhline(0.6, color="grey", linestyle="--", linewidth=1, label="issue 8 target (0.6)")
        right.set_ylim(0, 1)
        right.set_ylabel("path / bare forward")
        right.set_title("The worker's default path, run by run (runs/N-*.md) and its card", fontsize=9)
        right.tick_params(axis="x", labelsize=7)
        right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "gpu-embed.png", dpi=120)


def _run_order(path: Path) -> tuple[int, str]:
    """runs/N-name.json by run number (10 after 9, not after 1); other names after them."""
    number = path.stem.split("-")[0]
    return (int(number) if number.isdigit() else sys.maxsize, path.name)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_embed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--images", type=int, default=8192, help="of the 512 px set; half as many 1024 px")
    parser.add_argument("--batch", type=int, default=256, help="the worker's GPU_EMBED_BATCH_SIZE default")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variants", nargs="*", default=["16:1", "8:2", "4:2", "4:1"],
                        help="READERS:ASSEMBLERS thread counts to run beside make_feeder's choice; suffixes: "
                             ":loop resizes image by image, :wide resizes up to 4096 px in batched products, "
                             ":nostream assembles on the default CUDA stream, :fwdstream runs the forward on a "
                             "stream of its own")
    parser.add_argument("--pil-images", type=int, default=2048, help="0: skip the Pillow path")
    parser.add_argument("--parts", type=int, default=1, help="0: skip the stages measured alone")
    parser.add_argument("--nvimgcodec", action="store_true",
                        help="also run the nvImageCodec prototype (Bench.path_nvimgcodec; CUDA and the package)")
    parser.add_argument("--nvimgcodec-hardware", action="store_true",
                        help="also the nvImageCodec prototype with the JPEG hardware engine first")
    parser.add_argument("--processes", type=int, nargs="*", default=[],
                        help="also run the multi-process prototype (Bench.path_processes) with these counts")
    parser.add_argument("--switch-intervals", type=float, nargs="*", default=[5],
                        help="GIL switch intervals (ms) to run the paths under")
    parser.add_argument("--photos", type=Path, default=PHOTOS)
    parser.add_argument("--work", type=Path, default=Path("bench/out/gpu-embed"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/gpu-embed"))
    parser.add_argument("--plot", type=Path, help="only draw the plot from DIR/gpu-embed.json")
    args = parser.parse_args(argv)
    if args.plot:
        plot(args.plot)
        return 0
    args.argv = argv
    run(args)
    print((args.out / "gpu-embed.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
