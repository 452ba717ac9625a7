"""How close to the Bayes error do the Two Circles targets sit?

The Two Circles set (sklearn ``make_circles``, factor 0.8) is two rings of radius 1 and 0.8 with
isotropic Gaussian noise of standard deviation ``noise`` added to each coordinate.  Its class
densities are known in closed form:

    p(x | ring r) = exp(-(|x|^2 + r^2) / (2 s^2)) * I0(|x| r / s^2) / (2 pi s^2),

so the Bayes rule (pick the ring with the larger density; the classes are balanced) can be
evaluated on the protocol's own test sets: for seed k the 1000 test points that
``--dataset=two_circles --split_seed=k`` evaluates on.  This prints, per noise, the Bayes rule's
test error over the seeds (mean and std as ``two_circles.py`` reports them), its error on a large
sample (the Bayes error itself), and what a row's mean and std imply: if every seed's error is at
least ``f``, the population std of ``n`` seeds is at most ``sqrt(n - 1) * (mean - f)`` (one seed
high, the others at ``f``), so a reported ``mean ± std`` needs some seed at or below
``mean - std / sqrt(n - 1)``.

    python benchmarks/two_circles_bayes.py --noises=0.01,0.06 --seeds=10
"""
import numpy as np
from absl import app, flags
from scipy import special

flags.DEFINE_list("noises", ["0.01", "0.06"], "Noise levels.")
flags.DEFINE_integer("seeds", 10, "Seeds (test sets) per noise, as in two_circles.py.")
flags.DEFINE_integer("large_sample", 1_000_000, "Points drawn to estimate the Bayes error itself.")
flags.DEFINE_list("rows", ["WISE 2019 generator:0.06:4.75:5.31", "WISE 2019 VAT eps=1.0:0.06:5.10:4.28"],
                  "NAME:NOISE:MEAN:STD rows whose mean ± std (percent, over --seeds seeds) to check.")

OUTER_RADIUS, INNER_RADIUS = 1.0, 0.8   # make_circles(factor=0.8); label 0 = outer ring, 1 = inner


def log_ring_density(x: np.ndarray, radius: float, noise: float) -> np.ndarray:
    """log p(x | ring of ``radius``) up to the constant -log(2 pi s^2) both classes share."""
    rho = np.hypot(x[:, 0], x[:, 1])
    z = rho * radius / noise**2
    # log I0(z) = log(i0e(z)) + z, stable for large z.
    return -(rho**2 + radius**2) / (2 * noise**2) + np.log(special.i0e(z)) + z


def bayes_predict(x: np.ndarray, noise: float) -> np.ndarray:
    return (log_ring_density(x, INNER_RADIUS, noise) > log_ring_density(x, OUTER_RADIUS, noise)).astype(np.int64)


def bayes_test_error(noise: float, seed: int) -> float:
    """Percent error of the Bayes rule on the test set of ``--split_seed=seed``."""
    from tf_advssl import data
    from tf_advssl.config import Config
    from tf_advssl.methods import resolve

    config = resolve(Config(dataset="two_circles", noise=noise, split_seed=seed, seed=seed))
    loaded = data.load(config)
    x_test, y_test = np.asarray(loaded.x_test, np.float64), np.asarray(loaded.y_test)
    return float(np.mean(bayes_predict(x_test, noise) != y_test) * 100)


def main(argv):
    del argv
    from sklearn.datasets import make_circles

    f = flags.FLAGS
    floors = {}
    for noise in map(float, f.noises):
        errors = np.array([bayes_test_error(noise, seed) for seed in range(f.seeds)])
        x, y = make_circles(f.large_sample, noise=noise, factor=INNER_RADIUS / OUTER_RADIUS, random_state=12345)
        bayes = float(np.mean(bayes_predict(x, noise) != y) * 100)
        floors[noise] = errors.min()
        print(f"noise {noise:.2f}: Bayes error {bayes:.2f} % ({f.large_sample} points); the Bayes rule on the "
              f"protocol's {f.seeds} test sets: {errors.mean():.2f} ± {errors.std():.2f} % "
              f"(per seed: {', '.join(f'{e:.1f}' for e in errors)}; lowest {errors.min():.1f})", flush=True)
    for row in f.rows:
        name, noise, mean, std = row.rsplit(":", 3)
        noise, mean, std = float(noise), float(mean), float(std)
        needed = mean - std / np.sqrt(f.seeds - 1)
        line = (f"{name} (noise {noise}): {mean:.2f} ± {std:.2f} % over {f.seeds} seeds needs some seed at "
                f"or below {needed:.2f} %")
        if noise in floors:
            line += f"; the Bayes rule's lowest seed here is {floors[noise]:.1f} %"
        print(line)


if __name__ == "__main__":
    app.run(main)
