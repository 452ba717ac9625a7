"""tf.data streams: the seeded training stream that resumes exactly (``train_dataset``), the
Keras-API stream of in-memory arrays (``ssl_dataset``), and ordered evaluation batches."""
from __future__ import annotations

from typing import Optional
import numpy as np
import tensorflow as tf

from tf_advssl.config import ConfigError
from tf_advssl.data.arrays import row_reader
from tf_advssl.data.splits import SSLData


# Epoch seeds of the two streams of train_dataset: [seed, offset + epoch].
LABELED_STREAM_OFFSET = 0


UNLABELED_STREAM_OFFSET = 2 ** 40


def index_stream(num_items: int, batch_size: int, seed: int, stream_offset: int,
                  start_step: int) -> tf.data.Dataset:
    """Infinite batches of positions in ``[0, num_items)``, a function of (seed, step) only.

    Epoch ``e`` is ``stateless_shuffle(range(num_items), seed=[seed, stream_offset + e])``;
    example counter ``k = step * batch_size + j`` is ``perm_{k // N}[k % N]``.
    Batches run across epoch boundaries (so a batch can repeat an example when
    ``num_items < batch_size``).  The stream from ``start_step`` on is exactly
    the tail of the stream from step 0.

    Each batch is one vectorised gather (no per-example tf.data work): a
    ``scan`` over the steps keeps the permutation of the epoch the last batch
    ended in, so a shuffle of ``num_items`` positions is computed only when a
    batch reaches an epoch not yet seen; a batch spanning epochs ``e0 .. e1``
    gathers ``k - e0 * N`` from their concatenated permutations.
    """
    if num_items < 1 or batch_size < 1:
        raise ValueError(f"index_stream needs num_items >= 1 and batch_size >= 1, "
                         f"got {num_items} and {batch_size}")
    n = tf.constant(num_items, tf.int64)
    b = tf.constant(batch_size, tf.int64)
    seed_t = tf.constant(seed, tf.int64)
    offsets = tf.range(batch_size, dtype=tf.int64)

    def shuffle(epoch):
        return tf.random.experimental.stateless_shuffle(
            tf.range(num_items, dtype=tf.int64), seed=tf.stack([seed_t, stream_offset + epoch]))

    def step_fn(state, step):
        cached_epoch, cached_perm = state
        first = step * b
        e0 = first // n
        e1 = (first + b - 1) // n

        def permutation(epoch):
            return tf.cond(tf.equal(epoch, cached_epoch), lambda: cached_perm, lambda: shuffle(epoch))

        def in_cached_epoch():
            return tf.gather(cached_perm, first - e0 * n + offsets), cached_perm

        def across_epochs():
            perms = tf.map_fn(permutation, tf.range(e0, e1 + 1),
                              fn_output_signature=tf.TensorSpec([num_items], tf.int64))
            positions = tf.gather(tf.reshape(perms, [-1]), first - e0 * n + offsets)
            return positions, perms[-1]

        fits = tf.logical_and(tf.equal(e0, cached_epoch), tf.equal(e1, cached_epoch))
        positions, last_perm = tf.cond(fits, in_cached_epoch, across_epochs)
        positions = tf.ensure_shape(positions, [batch_size])
        last_perm = tf.ensure_shape(last_perm, [num_items])
        return (e1, last_perm), positions

    no_epoch = (tf.constant(-1, tf.int64), tf.zeros([num_items], tf.int64))
    steps = tf.data.Dataset.range(start_step, np.iinfo(np.int64).max)
    return steps.scan(no_epoch, step_fn)


def _deterministic(ds: tf.data.Dataset) -> tf.data.Dataset:
    options = tf.data.Options()
    options.deterministic = True
    return ds.with_options(options)


def _stream_positions(num_labeled: int, num_unlabeled: int, batch_size: int, unlabeled_batch_size: int,
                      seed: int, start_step: int) -> tf.data.Dataset:
    """The positions of the two training streams, step by step: (labeled rows, unlabeled rows)."""
    return tf.data.Dataset.zip((
        index_stream(num_labeled, batch_size, seed, LABELED_STREAM_OFFSET, start_step),
        index_stream(num_unlabeled, unlabeled_batch_size, seed, UNLABELED_STREAM_OFFSET, start_step)))


def _read_batches(positions: tf.data.Dataset, read) -> tf.data.Dataset:
    """``read(labeled positions, unlabeled positions)`` for each step, in parallel, in order."""
    return _deterministic(positions.map(read, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE))


def train_dataset(data: SSLData, batch_size: int, unlabeled_batch_size: int, seed: int,
                  start_step: int = 0, num_replicas: int = 1, first_replica: int = 0,
                  num_local_replicas: Optional[int] = None) -> tf.data.Dataset:
    """Infinite stream of ``((x_l, y_l), (x_u, idx_u))`` training batches.

    ``x_l``: ``(batch_size,) + input_shape`` float32 (preprocessed), ``y_l``:
    ``(batch_size,)`` int64; ``x_u``: ``(unlabeled_batch_size,) + input_shape``
    float32, ``idx_u``: int64 indices of those examples in ``data.x_train``.
    The labeled stream cycles through ``data.labeled_indices``, the unlabeled
    stream through all of ``x_train``, each in its own per-epoch permutation
    derived from ``seed`` (see :func:`index_stream`).  The batches from
    ``start_step`` on are exactly those an uninterrupted stream yields from
    that step.

    Distribution: with ``num_replicas > 1`` each global batch (the sizes above)
    is cut into ``num_replicas`` equal consecutive slices, and the stream yields,
    for every step, the slices of replicas ``first_replica`` ..
    ``first_replica + num_local_replicas - 1`` (default: all) one after the
    other.  Only those rows are read and preprocessed.
    """
    read_rows = row_reader(data.x_train)
    y_all = tf.constant(data.y_train.astype(np.int64))
    labeled = tf.constant(np.asarray(data.labeled_indices, np.int64))
    preprocess = data.preprocessor

    def labeled_batch(positions):
        idx = tf.gather(labeled, positions)
        return preprocess(read_rows(idx)), tf.gather(y_all, idx)

    def unlabeled_batch(idx):
        return preprocess(read_rows(idx)), idx

    positions = _stream_positions(data.num_labeled, data.num_unlabeled, batch_size, unlabeled_batch_size, seed,
                                  start_step)
    if num_replicas > 1:
        count = num_replicas - first_replica if num_local_replicas is None else num_local_replicas
        if batch_size % num_replicas or unlabeled_batch_size % num_replicas:
            raise ConfigError(f"batch sizes {batch_size} and {unlabeled_batch_size} do not divide by "
                              f"{num_replicas} replicas")

        def local_slices(labeled_positions, unlabeled_idx):
            labeled_positions = tf.reshape(labeled_positions, [num_replicas, -1])
            unlabeled_idx = tf.reshape(unlabeled_idx, [num_replicas, -1])
            local = slice(first_replica, first_replica + count)
            return tf.data.Dataset.from_tensor_slices((labeled_positions[local], unlabeled_idx[local]))

        positions = positions.flat_map(local_slices)
    return _read_batches(positions, lambda p, q: (labeled_batch(p), unlabeled_batch(q)))


def ssl_dataset(labeled, unlabeled, batch_size: int = 32, unlabeled_batch_size: int = 128,
                seed: int = 0) -> tf.data.Dataset:
    """The training stream of the Keras API: infinite ``((x_l, y_l), (x_u, idx_u))`` batches for
    ``model.fit`` of any method, from in-memory arrays.

    ``labeled = (x_l, y_l)``: inputs as the classifier takes them and integer labels;
    ``unlabeled``: inputs of the same shape (for most methods the whole training set, labeled
    rows included); ``idx_u`` are the rows' positions in it (per-example state such as
    Temporal Ensembling's table is indexed by them).  Inputs are cast to float32; there is no
    preprocessing.  Each stream cycles through its rows in a fresh permutation per epoch drawn
    from ``seed``, as ``train_dataset``.  As every infinite stream, give ``model.fit`` a
    ``steps_per_epoch``.
    """
    x_l, y_l = (np.asarray(a) for a in labeled)
    x_u = np.asarray(unlabeled)
    if len(x_l) != len(y_l) or len(x_l) == 0:
        raise ValueError(f"labeled: x and y must hold the same number (> 0) of rows; got {len(x_l)} and {len(y_l)}")
    if x_l.shape[1:] != x_u.shape[1:] or len(x_u) == 0:
        raise ValueError(f"unlabeled rows must be like the labeled ones, {x_l.shape[1:]}; got {x_u.shape}")
    if y_l.ndim != 1 or not np.issubdtype(y_l.dtype, np.integer):
        raise ValueError(f"labeled: y must be a vector of integer class labels; got {y_l.dtype} {y_l.shape}")
    for name, x in (("labeled", x_l), ("unlabeled", x_u)):
        bad = np.flatnonzero(~np.isfinite(x.reshape(len(x), -1)).all(axis=1)) if x.dtype.kind == "f" else []
        if len(bad):
            raise ValueError(f"{name} row {bad[0]} holds a NaN or an infinity; every input must be finite")
    read_labeled, read_unlabeled = row_reader(x_l), row_reader(x_u)
    labels = tf.constant(y_l.astype(np.int64))

    def batch(p, q):
        return ((tf.cast(read_labeled(p), tf.float32), tf.gather(labels, p)),
                (tf.cast(read_unlabeled(q), tf.float32), q))

    return _read_batches(_stream_positions(len(x_l), len(x_u), batch_size, unlabeled_batch_size, seed, 0), batch)


EVAL_SPLITS = ("test", "val", "validation", "train")


def eval_dataset(data: SSLData, split: str = "test", batch_size: int = 500) -> tf.data.Dataset:
    """``(x, y)`` batches of a split in order, last batch possibly smaller.

    ``split``: "test", "val" (alias "validation") or "train".  ``x`` is
    preprocessed float32 ``(b,) + input_shape``, ``y`` int64 ``(b,)``.
    """
    if split == "test":
        x, y = data.x_test, data.y_test
    elif split in ("val", "validation"):
        if data.x_val is None:
            raise ConfigError("no validation split: pass --validation_size > 0")
        x, y = data.x_val, data.y_val
    elif split == "train":
        x, y = data.x_train, data.y_train
    else:
        raise ValueError(f"split must be one of {EVAL_SPLITS}, got {split!r}")
    return _row_batches(data.preprocessor, x, tf.data.Dataset.range(len(x)), batch_size, y)


def input_batches(data: SSLData, indices, batch_size: int) -> tf.data.Dataset:
    """Preprocessed training inputs ``x_train[indices]``, in that order, in batches of
    ``batch_size`` (the last possibly smaller); no labels, no augmentation."""
    indices = tf.data.Dataset.from_tensor_slices(np.asarray(indices, np.int64))
    return _row_batches(data.preprocessor, data.x_train, indices, batch_size)


def _row_batches(preprocess, x, indices: tf.data.Dataset, batch_size: int, y=None) -> tf.data.Dataset:
    """``preprocess(x[idx])`` (and ``y[idx]`` if given) for batches of the int64 ``indices``."""
    read_rows = row_reader(x)
    if y is None:
        read = lambda idx: preprocess(read_rows(idx))
    else:
        labels = tf.constant(np.asarray(y, np.int64))
        read = lambda idx: (preprocess(read_rows(idx)), tf.gather(labels, idx))
    ds = indices.batch(batch_size).map(read, num_parallel_calls=tf.data.AUTOTUNE)
    return _deterministic(ds.prefetch(tf.data.AUTOTUNE))
