"""Feeding the encoder: read -> decode/preprocess (thread pool) -> assemble a batch -> forward.

The caller runs batch k through the model while the pool reads and decodes the next batches
(`prefetch` of them), so the forward pass never waits for Pillow on a CPU, and a GPU worker is fed by
the GPU decoder (core.preprocess.TensorDecoder) instead of one Python thread. A file that cannot be
read or decoded fails alone; the rest of its batch goes on."""
import contextlib
import os
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import torch

from common.low_priority import lower_this_thread
from core.backbones import Preprocess
from core.preprocess import TensorDecoder, pil_tensor, plain_jpeg
from core.transforms import eval_transform

Item = tuple[int, Callable[[], bytes]]  # an id and how to read its bytes


@dataclass
class Batch:
    ids: list[int]                      # the items that decoded, in order
    tensor: torch.Tensor | None         # [len(ids), 3, S, S], or None when nothing decoded
    failed: dict[int, str] = field(default_factory=dict)  # id -> reason


class Feeder:
    """`tensor_decode`: decode plain JPEGs with `TensorDecoder` on `device` (meant for GPUs).
    `assemblers`: threads that assemble (and, with `tensor_decode`, decode) batches, so the next batches are
    prepared while one is; each batch is still assembled by one thread, and handed out in order.
    `decode_nice`: the decode threads run at this much lower CPU priority (worker.batch_embed.DECODE_NICE).
    `batched_resize`, `side_streams`: the GPU path's two ways of keeping the GIL and the default stream free
    (TensorDecoder, `_assemble`); off only to measure what they bring (bench.gpu_embed).

    Made once per worker and encoder (worker.runtime), not per job: the transform, the GPU decoder
    and the thread pools outlive each job's `batches`. One `batches` runs at a time (a worker runs one
    job at a time); `close()` stops the pools when the worker switches encoders.

    A `batches` closed early (a job yielding to attributions) hands the reads it had started ahead to
    the next call, which takes those it is asked for again (the job that resumes the same images) instead
    of decoding them anew; each item id always names the same stored bytes. The next job then starts
    on decoded images instead of waiting for its first one, once per yield (about once a second during
    an import with one attribution a second). What the next call does not ask for is cancelled."""

    def __init__(self, preprocess: Preprocess, device: str = "cpu", workers: int = 2,
                 tensor_decode: bool = False, decode_nice: int = 0, assemblers: int = 1,
                 batched_resize: bool = True, side_streams: bool = True):
        self.preprocess, self.device, self.workers = preprocess, device, max(1, workers)
        self.assemblers = max(1, assemblers)
        self.transform = eval_transform(preprocess)
        self.decoder = TensorDecoder(preprocess, device, batched_resize) if tensor_decode else None
        self.side_streams = side_streams
        self.readers = ThreadPoolExecutor(self.workers, thread_name_prefix="decode",
                                          initializer=lower_this_thread, initargs=(decode_nice,))
        self.assembler = ThreadPoolExecutor(self.assemblers, thread_name_prefix="assemble")
        self._carried: dict[int, Future] = {}  # item id -> read started by a call that closed early
        self._streams = threading.local()  # each assembler thread's CUDA stream

    def batches(self, items: Sequence[Item], batch_size: int, prefetch: int | None = None) -> Iterator[Batch]:
        """Yield batches in order; at most `prefetch` batches beyond the current one are in flight
        (default: 2, or one per assembler thread if there are more). Closing the generator early (a job
        yielding to attributions) leaves the reads of the batches not handed out to the next call (class
        docstring)."""
        prefetch = max(2, self.assemblers) if prefetch is None else prefetch
        chunks = [items[i:i + batch_size] for i in range(0, len(items), batch_size)]
        carried, self._carried = self._carried, {}
        pending: deque[tuple[Future, list[tuple[int, Future]]]] = deque()  # assembly, and the reads it waits on
        try:
            for chunk in chunks:
                chunk_reads = [(i, carried.pop(i, None) or self.readers.submit(self._read, load)) for i, load in chunk]
                pending.append((self.assembler.submit(self._assemble, chunk_reads), chunk_reads))
                if len(pending) > prefetch:
                    yield _handed_out(pending.popleft()[0].result())
            while pending:
                yield _handed_out(pending.popleft()[0].result())
        finally:
            # The pools are kept for the next job. Reads of batches not handed out go on for it (see the
            # class docstring); started reads this call was not asked for are dropped.
            for assembly, _ in pending:
                assembly.cancel()
            self._carried = {i: read for _, chunk_reads in pending for i, read in chunk_reads}
            for read in carried.values():
                read.cancel()

    def close(self) -> None:
        for read in self._carried.values():
            read.cancel()
        self.assembler.shutdown(wait=False, cancel_futures=True)
        self.readers.shutdown(wait=False, cancel_futures=True)

    def _read(self, load: Callable[[], bytes]):
        """One item -> ("jpeg", bytes) for the tensor decoder, or ("tensor", [3, S, S]) decoded here."""
        data = load()
        if self.decoder is not None and plain_jpeg(data):
            return "jpeg", data
        return "tensor", pil_tensor(data, self.preprocess, self.transform)

    def _assemble(self, futures: list[tuple[int, Future]]) -> Batch:
        """On a GPU, on a CUDA stream of this thread's own, so that the next batch's decode and resize
        kernels need not queue behind the forward on the default stream. On an H200 this showed no gain
        that the noise let one see (bench.gpu_embed's `:nostream`): decode and forward both fill the GPU
        and take turns. It is kept since no run showed it slower either. The batch is complete on the
        device when it is handed out."""
        stream = self._side_stream()
        with torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext():
            batch = self._assemble_batch(futures)
            if stream is not None:
                stream.synchronize()  # releases the GIL while the kernels finish
        return batch

    def _side_stream(self) -> "torch.cuda.Stream | None":
        if not self.side_streams or self.decoder is None or self.decoder.device.type != "cuda":
            return None
        stream = getattr(self._streams, "stream", None)
        if stream is None:
            stream = self._streams.stream = torch.cuda.Stream(self.decoder.device)
        return stream

    def _assemble_batch(self, futures: list[tuple[int, Future]]) -> Batch:
        batch, tensors, jpegs = Batch([], None), {}, {}
        for item_id, future in futures:
            try:
                kind, value = future.result()
            except Exception as exc:  # a missing or damaged file must not block the rest
                batch.failed[item_id] = f"cannot read stored image: {type(exc).__name__}: {exc}"
                continue
            (jpegs if kind == "jpeg" else tensors)[item_id] = value
        if jpegs:
            tensors.update(self._decode_jpegs(jpegs, batch))
        batch.ids = [item_id for item_id, _ in futures if item_id in tensors]
        if batch.ids:
            batch.tensor = torch.stack([tensors[i].to(self.device) for i in batch.ids])
        return batch

    def _decode_jpegs(self, jpegs: dict[int, bytes], batch: Batch) -> dict[int, torch.Tensor]:
        try:
            return dict(zip(jpegs, self.decoder(list(jpegs.values()))))
        except Exception:  # one bad file fails the batched call: decode one by one, so only it falls back
            decoded = {i: self._decode_one(i, data, batch) for i, data in jpegs.items()}
            return {i: tensor for i, tensor in decoded.items() if tensor is not None}

    def _decode_one(self, item_id: int, data: bytes, batch: Batch) -> torch.Tensor | None:
        try:
            return self.decoder([data])[0]
        except Exception:  # a JPEG nvJPEG refuses may still be one Pillow reads
            pass
        try:
            return pil_tensor(data, self.preprocess, self.transform)
        except Exception as exc:
            batch.failed[item_id] = f"cannot decode stored image: {type(exc).__name__}: {exc}"
            return None


def _handed_out(batch: Batch) -> Batch:
    """Mark a batch made on an assembler's stream as used by the consumer's stream, so that the caching
    allocator does not give its memory to the next batch while the consumer's kernels still read it."""
    if batch.tensor is not None and batch.tensor.is_cuda:
        batch.tensor.record_stream(torch.cuda.current_stream(batch.tensor.device))
    return batch


def make_feeder(preprocess: Preprocess, device: str, decode_workers: int = 0, gpu_decode: bool = True,
                decode_nice: int = 0) -> Feeder:
    """The Feeder a worker uses on `device` (worker.batch_embed, from its settings; bench.gpu_embed).
    `decode_workers` 0: on a CPU one read/decode thread per core the process may use; on a GPU, where
    JPEGs are decoded on the device (`gpu_decode`), GPU_READERS threads read and GPU_ASSEMBLERS threads
    prepare batches side by side."""
    on_gpu = device.startswith("cuda")
    cores = len(os.sched_getaffinity(0))
    workers = decode_workers or (min(cores, GPU_READERS) if on_gpu else cores)
    return Feeder(preprocess, device, workers, tensor_decode=on_gpu and gpu_decode, decode_nice=decode_nice,
                  assemblers=GPU_ASSEMBLERS if on_gpu else 1)


# Thread counts of a GPU worker's Feeder, measured by bench.gpu_embed on an H100 host (16 cores, local
# files): the Python work of every stage (read, check, decode call, resize, forward) shares one GIL, and
# each thread more adds hand-overs of it. 16 readers fed 0.22-0.27 of the bare forward, 1-2 readers
# 0.24-0.33; a second assembler overlaps one batch's decode with the next one's resize. Reads from object
# storage wait on the network instead: raise ATTRIB_DECODE_WORKERS there.
GPU_READERS = 2
GPU_ASSEMBLERS = 2
