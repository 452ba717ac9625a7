"""VAT on MNIST-100 written from scratch, without any tf_advssl code: a cross-check of the
library's VAT on the configuration of the official Theano semi-supervised MNIST script
(takerum/vat: MLP 784-1200-1200-10 with batch norm after every layer including the
logits, batches 100 labeled / 250 unlabeled, Adam 2e-3 x0.9 every 500 steps, xi = 1e-6,
eps = 0.3, one power iteration, batch statistics of the perturbed passes not stored).

Plain tf.Variables and hand-written batch norm, so that nothing is shared with the
library but TensorFlow and the tfds MNIST files.  Options reproduce the PyTorch port of
that script (sndnyang/vat_pytorch, pytorch_vat_mnist_semi.py): --no_affine (batch norm
without scale and shift), --no_top_bn (plain logits layer with a bias), --center=0.5
(inputs x - 0.5), --bn_eps=1e-5, --lr_decay=0.95, --no_bn_finetune (test with the moving
statistics of the labeled batches, no re-estimation).  Prints the test error (moving
statistics) every --eval_every steps and, at the end, after re-estimating the batch-norm
statistics on unlabeled data (the official "finetune batch stat").

    python benchmarks/vat_mnist_standalone.py --data_dir=/tmp/tfds_data --steps=4000
"""
import argparse
import time

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds


def load(data_dir, num_labeled, seed, center=0.0):
    """Pixels in [0, 1] minus ``center``; labels int64."""
    def arrays(split):
        ds = tfds.as_numpy(tfds.load("mnist", split=split, data_dir=data_dir, batch_size=-1,
                                     as_supervised=True, download=False))
        return ds[0].reshape(len(ds[0]), -1).astype(np.float32) / 255.0 - center, ds[1].astype(np.int64)
    x_train, y_train = arrays("train")
    x_test, y_test = arrays("test")
    rng = np.random.RandomState(seed)
    per_class = num_labeled // 10
    labeled = np.concatenate([rng.permutation(np.where(y_train == k)[0])[:per_class] for k in range(10)])
    return x_train[labeled], y_train[labeled], x_train, x_test, y_test


class MLP:
    """784-1200-1200-10, batch norm after every linear layer (``top_bn``: also after the
    logits layer; otherwise that layer has a bias and no batch norm); ``affine``: the batch
    norms learn a scale and shift."""

    def __init__(self, widths, seed, momentum, bn_eps, affine=True, top_bn=True):
        init = tf.keras.initializers.GlorotUniform(seed=seed)
        self.momentum, self.bn_eps, self.top_bn = momentum, bn_eps, top_bn
        self.w, self.gamma, self.beta, self.mean, self.var = [], [], [], [], []
        for i, (m, n) in enumerate(zip(widths[:-1], widths[1:])):
            self.w.append(tf.Variable(init((m, n)), name=f"w{i}"))
            self.gamma.append(tf.Variable(tf.ones(n), name=f"gamma{i}", trainable=affine))
            self.beta.append(tf.Variable(tf.zeros(n), name=f"beta{i}", trainable=affine))
            self.mean.append(tf.Variable(tf.zeros(n), trainable=False))
            self.var.append(tf.Variable(tf.ones(n), trainable=False))
        self.normalized = len(self.w) if top_bn else len(self.w) - 1  # layers followed by batch norm
        n = self.normalized
        self.trainable = self.w + (self.gamma[:n] + self.beta[:n] if affine else [])
        if not top_bn:  # the last layer's shift acts as the logits' bias
            self.trainable.append(self.beta[-1])

    def __call__(self, x, mode):
        """mode: 'train' (batch statistics, stored), 'no_update' (batch statistics, not
        stored), 'test' (stored statistics), or a list collecting the batch statistics."""
        h = x
        for i, w in enumerate(self.w):
            h = h @ w
            if i == len(self.w) - 1 and not self.top_bn:
                return h + self.beta[i]
            if mode == "test":
                mean, var = self.mean[i], self.var[i]
            else:
                mean, var = tf.nn.moments(h, axes=[0])
                if mode == "train":
                    self.mean[i].assign(self.momentum * self.mean[i] + (1 - self.momentum) * mean)
                    self.var[i].assign(self.momentum * self.var[i] + (1 - self.momentum) * var)
                elif isinstance(mode, list):
                    mode.append((mean, var))
            h = self.gamma[i] * (h - mean) / tf.sqrt(var + self.bn_eps) + self.beta[i]
            if i < len(self.w) - 1:
                h = tf.nn.relu(h)
        return h


def kl(logits_p, logits_q):
    p = tf.nn.softmax(logits_p)
    return tf.reduce_sum(p * (tf.nn.log_softmax(logits_p) - tf.nn.log_softmax(logits_q)), axis=-1)


def normalize(d):
    return d / (tf.norm(d, axis=-1, keepdims=True) + 1e-12)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data_dir", default="/tmp/tfds_data")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--eval_every", type=int, default=1000)
    parser.add_argument("--eps", type=float, default=0.3)
    parser.add_argument("--xi", type=float, default=1e-6)
    parser.add_argument("--widths", default="1200,1200")
    parser.add_argument("--batch_size", type=int, default=100)
    parser.add_argument("--unlabeled_batch_size", type=int, default=250)
    parser.add_argument("--lr", type=float, default=0.002)
    parser.add_argument("--bn_momentum", type=float, default=0.9)
    parser.add_argument("--bn_eps", type=float, default=1e-6)
    parser.add_argument("--lr_decay", type=float, default=0.9)
    parser.add_argument("--center", type=float, default=0.0)
    parser.add_argument("--no_affine", action="store_true")
    parser.add_argument("--no_top_bn", action="store_true")
    parser.add_argument("--no_bn_finetune", action="store_true")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    tf.random.set_seed(args.seed)
    x_l, y_l, x_u, x_test, y_test = load(args.data_dir, 100, args.seed, args.center)
    model = MLP([784] + [int(w) for w in args.widths.split(",")] + [10], args.seed, args.bn_momentum, args.bn_eps,
                affine=not args.no_affine, top_bn=not args.no_top_bn)
    schedule = tf.keras.optimizers.schedules.ExponentialDecay(args.lr, 500, args.lr_decay, staircase=True)
    optimizer = tf.keras.optimizers.Adam(schedule)
    rng = np.random.RandomState(args.seed)

    @tf.function
    def train_step(xl, yl, xu):
        with tf.GradientTape() as tape:
            nll = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(yl, model(xl, "train")))
            clean = tf.stop_gradient(model(xu, "no_update"))
            d = args.xi * normalize(tf.random.normal(tf.shape(xu)))
            with tf.GradientTape() as inner:
                inner.watch(d)
                dist = tf.reduce_sum(kl(clean, model(xu + d, "no_update")))
            r = args.eps * normalize(tf.stop_gradient(inner.gradient(dist, d)))
            lds = tf.reduce_mean(kl(clean, model(xu + r, "no_update")))
            loss = nll + lds
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable), model.trainable))
        return nll, lds

    def test_error():
        logits = tf.concat([model(x_test[i:i + 1000], "test") for i in range(0, len(x_test), 1000)], 0)
        return 100.0 * float(np.mean(np.argmax(logits.numpy(), -1) != y_test))

    start, perm, pos = time.time(), rng.permutation(len(x_u)), 0
    for step in range(1, args.steps + 1):
        if pos + args.unlabeled_batch_size > len(x_u):
            perm, pos = rng.permutation(len(x_u)), 0
        xu = x_u[perm[pos:pos + args.unlabeled_batch_size]]
        pos += args.unlabeled_batch_size
        li = rng.permutation(len(x_l))[:args.batch_size]
        nll, lds = train_step(x_l[li], y_l[li], xu)
        if step % args.eval_every == 0 or step == args.steps:
            print(f"step {step}: test error {test_error():.2f} %  nll {float(nll):.4f}  lds {float(lds):.4f}  "
                  f"{step / (time.time() - start):.1f} steps/s", flush=True)
    if args.no_bn_finetune:
        return
    # the official "finetune batch stat": the stored statistics become the average batch statistics
    # of unlabeled batches
    collected = []
    for i in range(0, 10000, args.unlabeled_batch_size):
        model(x_u[perm[i:i + args.unlabeled_batch_size]], collected)
    layers = model.normalized
    for i in range(layers):
        model.mean[i].assign(tf.reduce_mean([m for m, _ in collected[i::layers]], 0))
        model.var[i].assign(tf.reduce_mean([v for _, v in collected[i::layers]], 0))
    print(f"final after re-estimating batch-norm statistics: test error {test_error():.2f} %", flush=True)


if __name__ == "__main__":
    main()
