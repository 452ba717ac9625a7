"""Pictures comparing trained runs, written as PNG (matplotlib, headless).

    python bin/plot.py --workdir=A,B,C                       # decision boundaries (2-D) or adversarial grids
    python bin/plot.py --workdir=A,B --kind=robustness --attack=fgm --out=/tmp/fgm.png
    python bin/plot.py --workdir=A,B --kind=interpolation_paths --path_eps=1.0

--kind: decision_boundary (one panel per run, 2-D datasets), adversarial_examples
(original / VAT / FGSM / method-specific rows per run, image datasets),
robustness (error against epsilon from each run's robustness.json, written by
bin/evaluate.py), interpolation_paths (error along real-real and
real-adversarial interpolation paths), or auto.  Prints the paths written.
"""
import sys

from absl import app, flags, logging

flags.DEFINE_multi_string("workdir", None, "Run directory (repeatable; comma-separated lists allowed).")
flags.DEFINE_string("kind", "auto", "auto, decision_boundary, adversarial_examples, robustness or "
                                    "interpolation_paths.")
flags.DEFINE_string("out", None, "Output PNG (default: <first workdir>/<kind>_runs.png).")
flags.DEFINE_string("attack", "fgm", "--kind=robustness: the attack's key in robustness.json.")
flags.DEFINE_float("path_eps", None, "--kind=interpolation_paths: L2 radius of the adversarial end in the model's "
                                     "input space (default: each run's own vat_eps, else 1.0).")


def main(argv):
    del argv
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    from tf_advssl import cli, figures

    workdirs = [w for value in (flags.FLAGS.workdir or []) for w in value.split(",") if w]

    def body():
        for path in figures.plot_runs(workdirs, flags.FLAGS.kind, flags.FLAGS.out, flags.FLAGS.attack,
                                      flags.FLAGS.path_eps):
            print(path)

    return cli.run_main(body)


if __name__ == "__main__":
    app.run(lambda argv: sys.exit(main(argv)))
