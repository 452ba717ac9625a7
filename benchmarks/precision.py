"""VAT on MNIST with 100 labels under each precision policy: steps/s and test error.

    python benchmarks/precision.py --train_steps=1000 --vat_xi=0 --data_dir=/tmp/tfds_data \
        --tfds_manual_dir=/work/shared/datasets/mnist --out=/tmp/bench_precision

Runs ``training.run`` once per policy (same seed, same batches) in this process;
the policies are interleaved with nothing else, so their steps/s are comparable
within one invocation.  On CPU only bfloat16 can be faster (and only with CPUs that
have bf16 instructions); float16 speed is a GPU question.
"""
import os

from absl import app, flags

flags.DEFINE_list("policies", ["float32", "mixed_bfloat16", "mixed_float16"], "Precision policies.")
flags.DEFINE_integer("train_steps", 1000, "Steps per run (the paper's 12000 take hours on CPU).")
flags.DEFINE_string("data_dir", "/tmp/tfds_data", "tensorflow-datasets data directory.")
flags.DEFINE_string("tfds_manual_dir", None, "Directory of the MNIST archives.")
flags.DEFINE_string("out", "/tmp/bench_precision", "Parent of the run directories.")
flags.DEFINE_integer("seed", 0, "Seed.")
flags.DEFINE_float("vat_xi", None, "VAT's xi for every policy (default: the method's). The mixed policies "
                   "always use the exact power iteration, so --vat_xi=0 compares like with like.")


def main(argv):
    del argv
    from tf_advssl import training
    from tf_advssl.config import Config

    FLAGS = flags.FLAGS
    print("| policy | steps/s | test error % | loss_vat (last) |\n|---|---|---|---|")
    for policy in FLAGS.policies:
        config = Config(method="vat", dataset="mnist", data_dir=FLAGS.data_dir, tfds_manual_dir=FLAGS.tfds_manual_dir,
                        train_steps=FLAGS.train_steps, seed=FLAGS.seed, mixed_precision=policy, verbose=0,
                        export=False, workdir=os.path.join(FLAGS.out, policy), overwrite=True,
                        method_params={} if FLAGS.vat_xi is None else {"vat_xi": FLAGS.vat_xi})
        metrics = training.run(config)
        print(f"| {policy} | {metrics['steps_per_second']:.2f} | {metrics['test_error']:.2f} | "
              f"{metrics['loss_terms']['loss_vat']:.4f} |", flush=True)


if __name__ == "__main__":
    app.run(main)
