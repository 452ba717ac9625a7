"""Input arrays that stay on disk (``NpyRows``, ``Rows``), reading their rows inside tf.data
(``row_reader``), and checks and ranges computed over them chunk by chunk."""
from __future__ import annotations

import os
from typing import Optional
import numpy as np
import tensorflow as tf

from tf_advssl.config import ConfigError


# tfds splits are written here (under --data_dir, or tfds' default) as .npy files.
ARRAY_CACHE_DIR = "tf_advssl_arrays"


# In-memory arrays up to this size are gathered inside the tf.data graph; larger
# ones and streamed ones through tf.numpy_function (only the batch's rows are read).
IN_GRAPH_BYTES = 32 * 2 ** 20


class Rows:
    """The rows ``base[indices]`` of an array (typically :class:`NpyRows`), read on
    access instead of copied.

    Supports what the package does with raw inputs: ``len``, ``shape``,
    ``dtype``, ``ndim``, indexing by an integer, a slice, an index array or a
    tuple whose first element selects rows (each returns an ndarray), and
    ``np.asarray`` (reads every row: only for small sets).
    """

    def __init__(self, base, indices):
        self.base = base
        self.indices = np.asarray(indices, np.int64)

    def __len__(self):
        return len(self.indices)

    @property
    def shape(self):
        return (len(self.indices),) + tuple(self.base.shape[1:])

    @property
    def dtype(self):
        return self.base.dtype

    @property
    def ndim(self):
        return self.base.ndim

    def __getitem__(self, key):
        first, rest = (key[0], key[1:]) if isinstance(key, tuple) else (key, ())
        rows = self.indices[first]
        if np.ndim(rows) == 0:
            return np.asarray(self.base[int(rows)])[rest]
        return np.asarray(self.base[rows])[(slice(None),) + rest]

    def __array__(self, dtype=None, copy=None):
        out = np.asarray(self.base[self.indices])
        return out if dtype is None else out.astype(dtype)


def is_streamed(x) -> bool:
    """True if ``x`` is read from disk on access (NpyRows, a memory map, or Rows of one)."""
    return isinstance(x, (NpyRows, np.memmap, Rows))


def select_rows(x, indices):
    """``x[indices]``: a copy for in-memory arrays, :class:`Rows` for streamed ones."""
    if isinstance(x, Rows):
        return Rows(x.base, x.indices[indices])
    if is_streamed(x):
        return Rows(x, indices)
    return x[indices]


def column_range(x, chunk_size: int = 65536):
    """Per-feature ``(min, max)`` over the rows of ``x``, read in chunks."""
    low = high = None
    for start in range(0, len(x), chunk_size):
        block = np.asarray(x[start:start + chunk_size], np.float32)
        block_low, block_high = block.min(axis=0), block.max(axis=0)
        low = block_low if low is None else np.minimum(low, block_low)
        high = block_high if high is None else np.maximum(high, block_high)
    return low, high


def input_bounds(spec, x_train_raw: np.ndarray):
    """Valid raw range (clip_min, clip_max): the pixel range for images (scalars), else
    the per-feature min and max of the training set (arrays of the input shape)."""
    if spec.pixel_range is not None:
        return float(spec.pixel_range[0]), float(spec.pixel_range[1])
    return column_range(x_train_raw)


def eps_space_note(spec, attack: str) -> str:
    norm = "L-inf" if attack in ("fgsm", "pgd_linf") else "L2"
    if spec.pixel_range is not None:
        low, high = spec.pixel_range
        return (f"eps is the {norm} norm of the perturbation in the raw input space: {spec.raw_dtype} pixel "
                f"values {low}..{high} of {'x'.join(map(str, spec.input_shape))} images; adversarial "
                f"inputs are clipped to [{low}, {high}] (not rounded)")
    return (f"eps is the {norm} norm of the perturbation in the raw feature space of the "
            f"{spec.input_shape[0]}-D inputs; adversarial inputs are clipped to the per-feature range "
            f"of the training set")


def npy_header(fileobj):
    """(shape, dtype) from the header of an open ``.npy`` file."""
    version = np.lib.format.read_magic(fileobj)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, _, dtype = read(fileobj)
    return tuple(shape), np.dtype(dtype)


def check_finite(name: str, key: str, x, chunk_size: int = 65536) -> None:
    """ConfigError naming the array ``key`` of ``--dataset=name`` and the first row holding
    a NaN or an infinity; float arrays only (integer images cannot hold either)."""
    if not np.issubdtype(x.dtype, np.floating):
        return
    for start in range(0, len(x), chunk_size):
        rows = np.asarray(x[start:start + chunk_size])
        finite = np.isfinite(rows.reshape(len(rows), -1))
        bad_rows = np.flatnonzero(~finite.all(axis=1))
        if len(bad_rows):
            row = bad_rows[0]
            value = rows.reshape(len(rows), -1)[row][~finite[row]][0]
            raise ConfigError(f"--dataset={name}: {key}[{start + row}] holds {value}; every input must be "
                              f"a finite number")


class NpyRows:
    """Rows of an ``.npy`` file, read from disk on access with ``os.pread`` (nothing is
    mapped or cached by this process: its memory holds only what a call returns).

    Array-like enough for the package: ``len``, ``shape``, ``dtype``, ``ndim``,
    ``nbytes``, indexing by an integer, a slice, an index array or a tuple whose
    first element selects rows (each returns an ndarray), ``np.asarray`` (reads the
    whole file: only for small sets).  ``row_shape`` reinterprets each row (e.g.
    ``(28, 28, 1)`` for a file of ``(N, 28, 28)`` images).
    """

    def __init__(self, path: str, row_shape: Optional[tuple] = None):
        self.path = path
        header = np.load(path, mmap_mode="r", allow_pickle=False)  # header only; no page is read
        shape, dtype, self.offset = header.shape, header.dtype, int(header.offset)
        fortran_order = header.ndim > 1 and header.flags.f_contiguous and not header.flags.c_contiguous
        del header
        if fortran_order or not shape:
            raise ValueError(f"{path}: expected a C-ordered array of rows, got shape {shape}")
        self.dtype = np.dtype(dtype)
        self.num_rows = int(shape[0])
        file_row_shape = tuple(int(n) for n in shape[1:])
        self.row_shape = file_row_shape if row_shape is None else tuple(int(n) for n in row_shape)
        if int(np.prod(self.row_shape)) != int(np.prod(file_row_shape)):
            raise ValueError(f"{path}: rows of shape {file_row_shape} cannot be read as {self.row_shape}")
        self.row_bytes = int(np.prod(file_row_shape)) * self.dtype.itemsize
        # Opened once here: tf.data calls the readers from several threads, and pread
        # (which takes the offset per call) is safe to share.
        self._fd = os.open(self.path, os.O_RDONLY)

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_fd"}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._fd = os.open(self.path, os.O_RDONLY)

    _close = staticmethod(os.close)  # bound now: at interpreter exit the module global may be gone

    def __del__(self):
        fd, self._fd = getattr(self, "_fd", None), None
        if fd is not None:
            try:
                self._close(fd)
            except OSError:
                pass

    def __len__(self):
        return self.num_rows

    @property
    def shape(self):
        return (self.num_rows,) + self.row_shape

    @property
    def ndim(self):
        return 1 + len(self.row_shape)

    @property
    def nbytes(self):
        return self.num_rows * self.row_bytes

    def _read_range(self, start: int, stop: int) -> np.ndarray:
        count = max(0, stop - start)
        data = os.pread(self._fd, count * self.row_bytes, self.offset + start * self.row_bytes)
        return np.frombuffer(data, self.dtype).reshape((count,) + self.row_shape).copy()

    def _read_rows(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty((len(rows),) + self.row_shape, self.dtype)
        flat = out.reshape(len(rows), -1).view(np.uint8).reshape(len(rows), self.row_bytes)
        fd = self._fd
        for i, row in enumerate(rows):
            flat[i] = np.frombuffer(os.pread(fd, self.row_bytes, self.offset + int(row) * self.row_bytes), np.uint8)
        return out

    def __getitem__(self, key):
        first, rest = (key[0], key[1:]) if isinstance(key, tuple) else (key, ())
        if isinstance(first, slice):
            start, stop, step = first.indices(self.num_rows)
            out = (self._read_range(start, stop) if step == 1
                   else self._read_rows(np.arange(start, stop, step)))
        elif np.ndim(first) == 0:
            row = int(first)
            row = row + self.num_rows if row < 0 else row
            if not 0 <= row < self.num_rows:
                raise IndexError(f"row {first} out of range for {self.num_rows} rows")
            return self._read_range(row, row + 1)[0][rest]
        else:
            rows = np.asarray(first)
            rows = np.flatnonzero(rows) if rows.dtype == bool else rows.astype(np.int64)
            rows = np.where(rows < 0, rows + self.num_rows, rows)
            if len(rows) and (rows.min() < 0 or rows.max() >= self.num_rows):
                raise IndexError(f"rows out of range for {self.num_rows} rows")
            out = self._read_rows(rows)
        return out[(slice(None),) + rest]

    def __array__(self, dtype=None, copy=None):
        out = self._read_range(0, self.num_rows)
        return out if dtype is None else out.astype(dtype)


def row_reader(x):
    """A function ``idx -> x[idx]`` on int64 index tensors, for use inside tf.data.

    Small in-memory arrays become a graph constant and ``tf.gather``; memory
    maps, :class:`Rows` and large arrays are read through ``tf.numpy_function``
    (only the requested rows leave the disk).
    """
    row_shape = tuple(int(n) for n in x.shape[1:])
    dtype = tf.as_dtype(x.dtype)
    if not is_streamed(x) and x.nbytes <= IN_GRAPH_BYTES:
        table = tf.constant(x)
        return lambda idx: tf.gather(table, idx)

    def read(idx):
        return np.ascontiguousarray(x[np.asarray(idx, np.int64)], dtype=x.dtype)

    def gather(idx):
        rows = tf.numpy_function(read, [idx], dtype, stateful=False)
        rows.set_shape(tf.TensorShape([idx.shape[0]]).concatenate(row_shape))
        return rows

    return gather
