"""Full-precision copies of a base's vectors, for re-scoring the shortlist of a compressed index.

At 1M x 1280 the float16 copies are 2.4 GiB: more than the whole memory budget of a worker's index
(issue 8: 256 MB). They stay in a `.npy` file and each query reads only its candidates' rows with
`os.pread` (a few hundred rows of 2.5 KB). Nothing is mapped, so the file adds nothing to a process's
RSS or PSS; the OS page cache keeps the hot part once for every worker on the host and can evict it.
The file descriptor is opened once: a snapshot pruned while a worker still serves it stays readable."""
import os
from pathlib import Path

import numpy as np

DTYPE = np.float16


class MemoryRows:
    """Rows held in memory: a base just built, before it is saved and mapped."""

    def __init__(self, vectors: np.ndarray):
        self.vectors = vectors

    def __len__(self) -> int:
        return len(self.vectors)

    def take(self, positions: np.ndarray) -> np.ndarray:
        return self.vectors[positions].astype(np.float32)

    def write_to(self, f) -> None:
        np.save(f, self.vectors)


class FileRows:
    """Rows of a saved `.npy` file, read on demand."""

    def __init__(self, path: Path):
        self.path = Path(path)
        header = np.load(self.path, mmap_mode="r")  # reads the header; no page is touched
        shape, dtype, self.offset = header.shape, header.dtype, header.offset
        fortran = not header.flags.c_contiguous
        del header
        if fortran or dtype != DTYPE or len(shape) != 2:
            raise ValueError(f"{self.path}: expected a C-ordered float16 matrix, got {dtype} {shape}")
        self.shape = shape
        self.row_bytes = shape[1] * np.dtype(DTYPE).itemsize
        if os.path.getsize(self.path) < self.offset + shape[0] * self.row_bytes:
            raise ValueError(f"{self.path} is shorter than its header says")
        self.fd = os.open(self.path, os.O_RDONLY)

    def __len__(self) -> int:
        return self.shape[0]

    def __del__(self):
        fd = getattr(self, "fd", None)
        if fd is not None:
            os.close(fd)

    def take(self, positions: np.ndarray) -> np.ndarray:
        """float32 [len(positions), dim]; positions in any order, read in file order."""
        positions = np.asarray(positions, np.int64)
        out = np.empty((len(positions), self.shape[1]), DTYPE)
        for i in np.argsort(positions, kind="stable"):
            data = os.pread(self.fd, self.row_bytes, self.offset + int(positions[i]) * self.row_bytes)
            out[i] = np.frombuffer(data, DTYPE)
        return out.astype(np.float32)

    def write_to(self, f) -> None:
        with open(self.path, "rb") as src:
            while chunk := src.read(1 << 24):
                f.write(chunk)
