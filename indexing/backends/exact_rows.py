"""Full-precision copies of a base's vectors, for re-scoring the shortlist of a compressed index.

At 1M x 1280 the float16 copies are 2.4 GiB: more than the whole memory budget of a worker's index
(issue 8: 256 MB). They stay in a `.npy` file and each query reads only its candidates' rows with
`os.pread` (a few hundred rows of 2.5 KB). Nothing is mapped, so the file adds nothing to a process's
RSS or PSS; the OS page cache keeps the hot part once for every worker on the host and can evict it.
The file descriptor is opened once: a snapshot pruned while a worker still serves it stays readable.
A base being built writes its rows the same way (`RowsWriter`), never holding them in memory."""
import io
import os
import tempfile
from pathlib import Path

import numpy as np

DTYPE = np.float16


class FileRows:
    """Rows of a float16 `.npy` matrix on disk, read on demand through one open file descriptor."""

    def __init__(self, fd: int, shape: tuple[int, int], offset: int, path: Path | None = None,
                 linkable: bool = False):
        self.fd, self.shape, self.offset, self.path = fd, tuple(shape), offset, path
        self.row_bytes = self.shape[1] * np.dtype(DTYPE).itemsize
        self.linkable = linkable  # the descriptor is a complete `.npy` file that `link_to` can name

    @classmethod
    def open(cls, path: Path) -> "FileRows":
        """A saved `.npy` file; ValueError when it is not a C-ordered float16 matrix or is cut short."""
        path = Path(path)
        header = np.load(path, mmap_mode="r")  # reads the header; no page is touched
        shape, dtype, offset = header.shape, header.dtype, header.offset
        fortran = not header.flags.c_contiguous
        del header
        if fortran or dtype != DTYPE or len(shape) != 2:
            raise ValueError(f"{path}: expected a C-ordered float16 matrix, got {dtype} {shape}")
        if os.path.getsize(path) < offset + shape[0] * shape[1] * np.dtype(DTYPE).itemsize:
            raise ValueError(f"{path} is shorter than its header says")
        return cls(os.open(path, os.O_RDONLY), shape, offset, path)

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

    def span(self, start: int, stop: int) -> np.ndarray:
        """float16 rows [start, stop), one read (a fold copies the rows in order, a chunk at a time)."""
        size = (stop - start) * self.row_bytes
        data = os.pread(self.fd, size, self.offset + start * self.row_bytes)
        if len(data) != size:
            raise OSError(f"re-rank rows {start}-{stop} end early ({len(data)} of {size} bytes)")
        return np.frombuffer(data, DTYPE).reshape(stop - start, self.shape[1])

    def link_to(self, path: Path) -> bool:
        """Give these rows the name `path` without copying them (a hard link to the descriptor's file,
        replacing `path` atomically); False where that cannot be done (a file not written by
        `RowsWriter` into a folder that takes O_TMPFILE, another filesystem, no /proc): copy then.
        The rows are never written again once finished, so the store and the snapshot can share them."""
        if not self.linkable:
            return False
        path = Path(path)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{self.fd}.link")
        try:
            os.fsync(self.fd)  # as a copy would be: the name must never come before the rows
            _link_following(f"/proc/self/fd/{self.fd}", tmp)
        except OSError:
            return False
        os.replace(tmp, path)
        return True

    def write_to(self, f) -> None:
        """A complete `.npy` file of these rows (a fresh header: a built file may hold fewer rows than it
        was opened for), copied 16 MB at a time."""
        f.write(_npy_header(self.shape))
        position, end = self.offset, self.offset + self.shape[0] * self.row_bytes
        while position < end:
            chunk = os.pread(self.fd, min(1 << 24, end - position), position)
            if not chunk:
                raise OSError(f"re-rank rows end early at byte {position} of {end}")
            f.write(chunk)
            position += len(chunk)


class RowsWriter:
    """Float16 rows appended while a base is built, straight to a file: at 10M x 1280 they are 24 GiB,
    more than the machine's memory. The file has no name (O_TMPFILE; elsewhere it is unlinked as soon
    as it is created), so nothing is left behind by a crash, and its space returns when its descriptor
    is closed: by `close()` when the build fails (a context manager), else by the store that `finish()`
    hands the descriptor to, once dropped. `save()` gives the finished file a name in the snapshot
    (`FileRows.link_to`) instead of copying it: at 1M a copy wrote 2.4 GiB more, at 10M 24 GiB."""

    def __init__(self, capacity: int, dim: int, directory: Path | None = None):
        directory = Path(directory if directory is not None else tempfile.gettempdir())
        directory.mkdir(parents=True, exist_ok=True)
        try:  # a file that can be linked into a snapshot later, which an unlinked one cannot
            self.fd, self.linkable = os.open(directory, os.O_TMPFILE | os.O_RDWR, 0o600), True
        except (AttributeError, OSError):  # no O_TMPFILE here, or a filesystem without it
            self.fd, path = tempfile.mkstemp(dir=directory, prefix=".rerank-rows-", suffix=".npy")
            os.unlink(path)
            self.linkable = False
        self.dim, self.count = dim, 0
        self.header = _npy_header((capacity, dim))
        self.offset = len(self.header)
        os.pwrite(self.fd, self.header, 0)

    def __enter__(self) -> "RowsWriter":
        return self

    def __exit__(self, exc_type, *_) -> None:
        if exc_type is not None:
            self.close()

    def append(self, vectors: np.ndarray) -> None:
        """Write these rows after the ones before (as float16)."""
        data = memoryview(np.ascontiguousarray(vectors, DTYPE)).cast("B")
        position = self.offset + self.count * self.dim * np.dtype(DTYPE).itemsize
        while len(data):
            written = os.pwrite(self.fd, data, position)
            data, position = data[written:], position + written
        self.count += len(vectors)

    def finish(self) -> FileRows:
        """The rows written, for reading; the descriptor passes to them (closed when they are dropped).
        Fewer rows than the capacity (rows deleted while a base was built) get their header rewritten,
        so the file stays a complete `.npy` that a snapshot can link: numpy pads the count to 21 digits,
        so its length does not change (were it to, the rows would have to move: then they are copied)."""
        header = _npy_header((self.count, self.dim))
        complete = header == self.header
        if not complete and len(header) == self.offset:
            os.pwrite(self.fd, header, 0)
            complete = True
        fd, self.fd = self.fd, None
        return FileRows(fd, (self.count, self.dim), self.offset, linkable=self.linkable and complete)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _link_following(source: str, target: Path) -> None:
    """linkat(source, target, AT_SYMLINK_FOLLOW): a new name for the file a /proc/self/fd link points
    to. `os.link` calls plain link(2), which links the symlink itself (EXDEV on /proc), unless it is
    given a directory descriptor; an absolute `source` ignores which one."""
    root = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.link(source, target, src_dir_fd=root, follow_symlinks=True)
    finally:
        os.close(root)


def _npy_header(shape: tuple[int, int]) -> bytes:
    """A `.npy` (version 1.0) header of a C-ordered float16 matrix of this shape."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": np.lib.format.dtype_to_descr(np.dtype(DTYPE)),
                                                  "fortran_order": False, "shape": tuple(int(x) for x in shape)})
    return buffer.getvalue()
