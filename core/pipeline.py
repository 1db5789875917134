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
    `host_decoders`: with `tensor_decode` on a GPU, threads that decode JPEGs on idle CPU cores beside the
    GPU decoder (`_Shared`): on a GPU the decoder and the forward take turns on the same cores, so the CPU's
    decodes are capacity the GPU does not have (bench.gpu_embed).
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
                 batched_resize: bool = True, side_streams: bool = True, host_decoders: int = 0):
        self.preprocess, self.device, self.workers = preprocess, device, max(1, workers)
        self.assemblers = max(1, assemblers)
        self.transform = eval_transform(preprocess)
        self.decoder = TensorDecoder(preprocess, device, batched_resize) if tensor_decode else None
        self.side_streams = side_streams
        self.readers = ThreadPoolExecutor(self.workers, thread_name_prefix="decode",
                                          initializer=_lower_thread_priority, initargs=(decode_nice,))
        self.assembler = ThreadPoolExecutor(self.assemblers, thread_name_prefix="assemble")
        self.host_decoders = host_decoders if self.decoder is not None else 0
        self.host = (ThreadPoolExecutor(self.host_decoders, thread_name_prefix="host-decode",
                                        initializer=_lower_thread_priority, initargs=(max(decode_nice, HOST_NICE),))
                     if self.host_decoders else None)
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
        if self.host is not None:
            self.host.shutdown(wait=False, cancel_futures=True)

    def _read(self, load: Callable[[], bytes]):
        """One item -> ("jpeg", _Shared) for the tensor decoder (offered to the host decoders too, if any),
        or ("tensor", [3, S, S]) decoded here."""
        data = load()
        if self.decoder is not None and plain_jpeg(data):
            shared = _Shared(data)
            if self.host is not None:
                self.host.submit(self._host_decode, shared)
            return "jpeg", shared
        return "tensor", pil_tensor(data, self.preprocess, self.transform)

    def _host_decode(self, shared: "_Shared") -> None:
        if not shared.claim(_HOST):
            return  # its batch's assembler got there first
        try:
            shared.image = self.decoder.decode_on_host(shared.data)
        except Exception as exc:  # the assembler falls back for it
            shared.error = exc
        finally:
            shared.done.set()

    def _assemble(self, futures: list[tuple[int, Future]]) -> Batch:
        """On a GPU, on a CUDA stream of this thread's own, so that the next batch's decode and resize
        kernels need not queue behind the forward on the default stream. On an H200 this showed no gain
        that the noise let one see (bench.gpu_embed's `:nostream`): decode and forward both fill the GPU
        and take turns. It is kept because it costs nothing. The batch is complete on the device when it
        is handed out."""
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

    def _decode_jpegs(self, jpegs: dict[int, "_Shared"], batch: Batch) -> dict[int, torch.Tensor]:
        """The device decodes in one batched call the JPEGs no host decoder has started; those the host
        decoders took are waited for. All are then resized together (TensorDecoder.prepare)."""
        images: dict[int, torch.Tensor] = {}  # id -> uint8 image on the device
        ready: dict[int, torch.Tensor] = {}   # id -> final tensor (Pillow's fallback)
        mine = {i: shared.data for i, shared in jpegs.items() if shared.claim(_DEVICE)}
        try:
            images.update(zip(mine, self.decoder.decode(list(mine.values())) if mine else []))
        except Exception:  # one bad file fails the batched call: decode one by one, so only it falls back
            for i, data in mine.items():
                self._decode_one(i, data, images, ready, batch)
        for i, shared in jpegs.items():
            if i in mine:
                continue
            shared.done.wait()
            if shared.error is None:
                images[i] = _used_here(shared.image)
            else:
                self._decode_one(i, shared.data, images, ready, batch)
        if images:
            ready.update(zip(images, self.decoder.prepare(list(images.values()))))
        return ready

    def _decode_one(self, item_id: int, data: bytes, images: dict, ready: dict, batch: Batch) -> None:
        try:
            images[item_id] = self.decoder.decode([data])[0]
            return
        except Exception:  # a JPEG nvJPEG refuses may still be one Pillow reads
            pass
        try:
            ready[item_id] = pil_tensor(data, self.preprocess, self.transform)
        except Exception as exc:
            batch.failed[item_id] = f"cannot decode stored image: {type(exc).__name__}: {exc}"


_HOST, _DEVICE = "host", "device"


class _Shared:
    """A read plain JPEG that a host decoder thread and its batch's assembler may both want: whoever claims
    it first decodes it, so the CPU takes as many as it gets to before the batch is assembled and the GPU
    decodes the rest; with fast reads or a busy CPU that is few, with a GPU slow to come back, more."""
    __slots__ = ("data", "owner", "image", "error", "done", "_lock")

    def __init__(self, data: bytes):
        self.data, self.owner, self.image, self.error = data, None, None, None
        self.done, self._lock = threading.Event(), threading.Lock()

    def claim(self, owner: str) -> bool:
        with self._lock:
            if self.owner is not None:
                return False
            self.owner = owner
            return True


def _used_here(image: torch.Tensor) -> torch.Tensor:
    """An image a host decoder copied to the device on its own stream, now read on this thread's stream:
    the allocator must not reuse its memory before this stream's kernels ran."""
    if image.is_cuda:
        image.record_stream(torch.cuda.current_stream(image.device))
    return image


def _handed_out(batch: Batch) -> Batch:
    """Mark a batch made on an assembler's stream as used by the consumer's stream, so that the caching
    allocator does not give its memory to the next batch while the consumer's kernels still read it."""
    if batch.tensor is not None and batch.tensor.is_cuda:
        batch.tensor.record_stream(torch.cuda.current_stream(batch.tensor.device))
    return batch


def make_feeder(preprocess: Preprocess, device: str, decode_workers: int = 0, gpu_decode: bool = True,
                decode_nice: int = 0, host_decoders: int | None = None) -> Feeder:
    """The Feeder a worker uses on `device` (worker.batch_embed, from its settings; bench.gpu_embed).
    `decode_workers` 0: on a CPU one read/decode thread per core the process may use; on a GPU, where
    JPEGs are decoded on the device (`gpu_decode`), GPU_READERS threads read and GPU_ASSEMBLERS threads
    prepare batches side by side, and `host_decoders` threads (None: the cores left, see GPU_SPARE_CORES)
    decode JPEGs on the CPU beside the GPU decoder."""
    on_gpu = device.startswith("cuda")
    cores = len(os.sched_getaffinity(0))
    workers = decode_workers or (min(cores, GPU_READERS) if on_gpu else cores)
    if host_decoders is None:
        host_decoders = max(0, cores - workers - GPU_ASSEMBLERS - GPU_SPARE_CORES) if on_gpu else 0
    return Feeder(preprocess, device, workers, tensor_decode=on_gpu and gpu_decode, decode_nice=decode_nice,
                  assemblers=GPU_ASSEMBLERS if on_gpu else 1, host_decoders=host_decoders)


# Thread counts of a GPU worker's Feeder, measured by bench.gpu_embed on an H100 host (16 cores, local
# files): the Python work of every stage (read, check, decode call, resize, forward) shares one GIL, and
# each thread more adds hand-overs of it. 16 readers fed 0.22-0.27 of the bare forward, 1-2 readers
# 0.24-0.33; a second assembler overlaps one batch's decode with the next one's resize. Reads from object
# storage wait on the network instead: raise ATTRIB_DECODE_WORKERS there.
GPU_READERS = 2
GPU_ASSEMBLERS = 2
# Cores a GPU worker leaves to its forward pass, the API and the rest of the host when it counts the cores
# its host decoders may take; the host decoders run at HOST_NICE so that the threads holding the GIL
# (readers, assemblers, the forward) keep their cores.
GPU_SPARE_CORES = 2
HOST_NICE = 5


def _lower_thread_priority(by: int) -> None:
    """Lower the calling thread's CPU priority by `by` (nice). Only on Linux, where nice is per thread:
    elsewhere it would lower the whole process."""
    if by and os.path.isdir("/proc/self/task"):
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + by))
