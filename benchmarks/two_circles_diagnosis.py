"""Is VAT's failure on Two Circles (noise 0.06) an optimisation problem or the objective?

Full-batch VAT on the WISE 2019 Two Circles set (8 labeled, 1500 unlabeled, MLP
2-100-50-2), optionally started from an "oracle" network first trained on the
labels of all 1500 points (a near-Bayes circle).  Prints, per seed, the test error
and VAT's objective split into its two terms -- NLL on the 8 labeled points and
the mean KL(p(x) || p(x + r_vadv)) over the unlabeled set (exact power iteration,
mean of 5 random starts) -- at the start and at the end.  If training that starts
at the circle leaves it for a solution with a lower objective, no optimiser
setting can reach the circle: the objective itself prefers the other solution.

    python benchmarks/two_circles_diagnosis.py --noise=0.06 --eps=0.1 --oracle_steps=1000
    python benchmarks/two_circles_diagnosis.py --noise=0.01 --eps=0.05 --steps=10000
"""
import time

import keras
import numpy as np
import tensorflow as tf
from absl import app, flags

flags.DEFINE_float("noise", 0.06, "Noise of make_circles (factor 0.8).")
flags.DEFINE_float("eps", 0.1, "VAT radius.")
flags.DEFINE_integer("steps", 3000, "Full-batch VAT steps (Adam, constant learning rate).")
flags.DEFINE_float("learning_rate", 3e-3, "Adam learning rate.")
flags.DEFINE_integer("oracle_steps", 0, "Supervised steps on all 1500 labels before VAT (0: none).")
flags.DEFINE_integer("seeds", 2, "Seeds (data, labeled points, initialisation).")


def objective(net, x_labeled, y_labeled, x_unlabeled, eps, scale=1.0):
    """(NLL, KL) of the network whose logits are multiplied by ``scale``."""
    from tf_advssl import losses, perturbations

    unscaled = net
    net = lambda v: scale * unscaled(v)  # noqa: E731

    clean = net(x_unlabeled)
    kls = []
    for start in range(5):
        r = perturbations.vat_perturbation(net, x_unlabeled, clean, xi=0.0, eps=eps, seed=start)
        kls.append(float(tf.reduce_mean(losses.kl_divergence(clean, net(x_unlabeled + r)))))
    nll = float(tf.reduce_mean(losses.cross_entropy(y_labeled, net(x_labeled))))
    return nll, float(np.mean(kls))


def run(seed, f):
    from sklearn import datasets
    from tf_advssl import losses, perturbations
    from tf_advssl.networks import build_network

    keras.utils.set_random_seed(seed)
    rng = np.random.RandomState(seed)
    x, y = datasets.make_circles(1500, noise=f.noise, factor=0.8, random_state=seed)
    x_test, y_test = datasets.make_circles(1000, noise=f.noise, factor=0.8, random_state=seed + 10_000)
    picked = np.concatenate([rng.choice(np.where(y == c)[0], 4, replace=False) for c in (0, 1)])
    x_l, y_l = tf.constant(x[picked], tf.float32), tf.constant(y[picked])
    x_u, y_u = tf.constant(x, tf.float32), tf.constant(y)
    net = build_network("mlp", (2,), 2, mlp_widths=(100, 50), dropout=0.0, seed=seed, mlp_batch_norm=False)
    seed_generator = keras.random.SeedGenerator(seed)

    def error():
        return 100.0 * float(np.mean(np.argmax(net(x_test.astype(np.float32)).numpy(), 1) != y_test))

    if f.oracle_steps:
        oracle_optimizer = keras.optimizers.Adam(f.learning_rate)

        @tf.function
        def oracle_step():
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(losses.cross_entropy(y_u, net(x_u, training=True)))
            oracle_optimizer.apply_gradients(zip(tape.gradient(loss, net.trainable_variables),
                                                 net.trainable_variables))

        for _ in range(f.oracle_steps):
            oracle_step()
    start = (error(),) + objective(net, x_l, y_l, x_u, f.eps)
    # The same decision boundary at any confidence: logits scaled by c (the lowest NLL + KL).
    best_scaled = min((sum(objective(net, x_l, y_l, x_u, f.eps, c)), c) for c in np.logspace(-2, 0, 9))
    optimizer = keras.optimizers.Adam(f.learning_rate)

    @tf.function
    def vat_step():
        with tf.GradientTape() as tape:
            clean = tf.stop_gradient(net(x_u, training=True))
            r = perturbations.vat_perturbation(lambda v: net(v, training=True), x_u, clean, xi=0.0, eps=f.eps,
                                               seed=seed_generator)
            loss = (tf.reduce_mean(losses.cross_entropy(y_l, net(x_l, training=True)))
                    + tf.reduce_mean(losses.kl_divergence(clean, net(x_u + r, training=True))))
        optimizer.apply_gradients(zip(tape.gradient(loss, net.trainable_variables), net.trainable_variables))

    for _ in range(f.steps):
        vat_step()
    return start, best_scaled, (error(),) + objective(net, x_l, y_l, x_u, f.eps)


def main(argv):
    del argv
    f = flags.FLAGS
    print(f"noise {f.noise}, eps {f.eps}, {f.steps} full-batch VAT steps, oracle start: {f.oracle_steps} steps")
    print("| seed | start: error % | NLL | KL | start, best logit scale c: NLL + KL (c) "
          "| end: error % | NLL | KL |\n|---|---|---|---|---|---|---|---|")
    for seed in range(f.seeds):
        began = time.time()
        (e0, n0, k0), (j, c), (e1, n1, k1) = run(seed, f)
        print(f"| {seed} | {e0:.1f} | {n0:.4f} | {k0:.4f} | {j:.4f} ({c:.3f}) | {e1:.1f} | {n1:.4f} | {k1:.4f} |  "
              f"({time.time() - began:.0f} s)", flush=True)


if __name__ == "__main__":
    app.run(main)
