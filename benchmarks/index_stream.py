"""Per-batch time of data.index_stream against the element-wise version it replaced.

    python benchmarks/index_stream.py [--batches 2000]

Both versions run in one process, alternately, on the shapes of the synthetic
sets (N = B = 1500, full batch) and MNIST's unlabeled stream (N = 60000, B = 128);
the script first checks that they yield the same batches.
"""
import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf

from tf_advssl.data import index_stream


def element_wise_index_stream(num_items, batch_size, seed, stream_offset, start_step):
    """The implementation before session 5 (flat_map over per-epoch permutations)."""
    first_example = start_step * batch_size
    first_epoch, skip = divmod(first_example, num_items)

    def epoch_positions(epoch):
        perm = tf.random.experimental.stateless_shuffle(
            tf.range(num_items, dtype=tf.int64),
            seed=tf.stack([tf.constant(seed, tf.int64), stream_offset + epoch]))
        return tf.data.Dataset.from_tensor_slices(perm)

    epochs = tf.data.Dataset.range(first_epoch, np.iinfo(np.int64).max)
    return epochs.flat_map(epoch_positions).skip(skip).batch(batch_size, drop_remainder=True)


def per_batch_ms(ds, batches):
    it = iter(ds)
    next(it)  # build the iterator and trace the functions outside the timing
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    return 1e3 * (time.perf_counter() - start) / batches


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    for n, b in ((1500, 1500), (60000, 128)):
        for a, c in zip(index_stream(n, b, 0, 1, 0).take(600), element_wise_index_stream(n, b, 0, 1, 0).take(600)):
            np.testing.assert_array_equal(a.numpy(), c.numpy())
        old, new = [], []
        for _ in range(args.repeats):
            old.append(per_batch_ms(element_wise_index_stream(n, b, 0, 1, 0), args.batches))
            new.append(per_batch_ms(index_stream(n, b, 0, 1, 0), args.batches))
        o, w = min(old), min(new)
        print(f"N={n:6d} B={b:5d}: old {o:.3f} ms/batch, new {w:.3f} ms/batch, old/new {o / w:.1f}x "
              f"(runs old {', '.join(f'{t:.3f}' for t in old)}; new {', '.join(f'{t:.3f}' for t in new)})",
              flush=True)


if __name__ == "__main__":
    main()
