"""Robustness of trained runs under adversarial attacks (white-box and transfer).

    python bin/evaluate.py --workdir=W --attack=fgm --eps=1,2,3,5,8 [--substitute_workdir=S]
    python bin/evaluate.py --workdir=A,B,C --attack=pgd_linf --eps=8,16 --pgd_steps=20 --target=next

Prints the error rate (%) under attack per epsilon, one row per run (several
--workdir allowed: repeat the flag or separate by commas), like the AdvMixup
seed's robustness tables; with --substitute_workdir also the black-box table
(adversarial examples of the substitute run, transferred).  Epsilon is in the
raw input space of the dataset (uint8 pixel values 0..255 for images) and
adversarial inputs are clipped to the valid raw range.  Writes
W/robustness.json and W/robustness_<attack>.png into every run directory (and
the combined table, json and plot into --output_dir if given).
"""
import sys

from absl import app, flags, logging

flags.DEFINE_multi_string("workdir", None, "Run directory written by bin/train.py (repeatable; "
                                          "comma-separated lists allowed).")
flags.DEFINE_string("attack", "fgm", "fgsm (L-inf), fgm (L2), pgd_linf or pgd_l2.")
flags.DEFINE_list("eps", ["1"], "Attack radii in the raw input space (pixel values 0..255 for images).")
flags.DEFINE_string("substitute_workdir", None, "Run attacked for the black-box (transfer) table.")
flags.DEFINE_string("target", "none", "none (untargeted), next, random, least_likely or a class index.")
flags.DEFINE_integer("pgd_steps", 10, "PGD iterations.")
flags.DEFINE_float("pgd_step_size", None, "PGD step size in raw space (default 2.5 * eps / pgd_steps).")
flags.DEFINE_bool("pgd_random_start", True, "Start PGD at a random point of the eps-ball.")
flags.DEFINE_string("split", "test", "test, val or train.")
flags.DEFINE_integer("num_examples", None, "Evaluate the first N examples of the split (default: all).")
flags.DEFINE_integer("batch_size", 500, "Attack batch size.")
flags.DEFINE_integer("seed", 0, "Seed of random starts and random targets.")
flags.DEFINE_string("output_dir", None, "Also write the combined table, json and plot of all runs here.")


def config_from_flags(flag_values):
    from tf_advssl.config import ConfigError
    from tf_advssl.robustness import EvaluationConfig

    workdirs = tuple(w for value in (flag_values.workdir or []) for w in value.split(",") if w)
    eps = []
    for value in flag_values.eps:
        try:
            eps.append(float(value))
        except ValueError:
            raise ConfigError(f"--eps must be a comma-separated list of numbers, got {value!r}") from None
    return EvaluationConfig(
        workdirs=workdirs, attack=flag_values.attack, eps=tuple(eps),
        substitute_workdir=flag_values.substitute_workdir, target=flag_values.target,
        pgd_steps=flag_values.pgd_steps, pgd_step_size=flag_values.pgd_step_size,
        pgd_random_start=flag_values.pgd_random_start, split=flag_values.split,
        num_examples=flag_values.num_examples, batch_size=flag_values.batch_size, seed=flag_values.seed,
        output_dir=flag_values.output_dir)


def main(argv):
    del argv
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    from tf_advssl import cli, robustness

    def body():
        robustness.evaluate(robustness.validate(config_from_flags(flags.FLAGS)))  # prints the table

    return cli.run_main(body)


if __name__ == "__main__":
    app.run(lambda argv: sys.exit(main(argv)))
