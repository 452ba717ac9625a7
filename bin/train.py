"""Train a semi-supervised classifier.

    python bin/train.py                       # VAT on Two Circles, no download
    python bin/train.py --method=vat --dataset=mnist --tfds_manual_dir=../shared/datasets/mnist \
        --workdir=/tmp/vat_mnist

Every field of tf_advssl.config.Config is a flag of the same name, and every
method hyper-parameter (see tf_advssl/hparams/*.py) is a flag too; flags left
unset take the dataset's and method's defaults.  The resolved config is
written to WORKDIR/config.json.
"""
import dataclasses
import sys

from absl import app, flags, logging

from tf_advssl import cli, hparams
from tf_advssl.config import Config

HELP = {
    "method": "Training method.",
    "dataset": "two_circles, moons, mnist, fashion_mnist, svhn_cropped, cifar10, cifar100, any tfds "
               "image-classification name, npz:PATH or folder:PATH.",
    "network": "mlp, mlp_wn, conv_small, conv_large, lenet or wrn28_2 (default per dataset and method: "
               "fm_gan uses mlp_wn, the Improved-GAN discriminator, on mnist and fashion_mnist).",
    "workdir": "Run directory: config, checkpoints, TensorBoard logs, metrics, export.",
    "overwrite": "Replace a run with a different config in --workdir (earlier exports are kept).",
    "num_labeled": "Number of labeled training examples (balanced across classes).",
    "balanced": "Choose the labeled examples balanced across classes.",
    "split_seed": "Seed of the labeled/validation split (and of synthetic data).",
    "validation_size": "Examples held out of the training set for validation.",
    "data_dir": "tensorflow-datasets data directory.",
    "tfds_manual_dir": "Directory holding a dataset's original archives, prepared offline by tfds.",
    "noise": "Noise of the synthetic sets (two_circles, moons).",
    "circles_factor": "two_circles: radius of the inner ring over the outer one's (sklearn's factor; the gap "
                      "between the rings is 1 - factor).",
    "num_train_synthetic": "Training (= unlabeled) points of a synthetic set.",
    "num_test_synthetic": "Test points of a synthetic set.",
    "zca": "ZCA whitening (default on for CIFAR).",
    "augment_translate": "Random translation in pixels (0 disables).",
    "augment_flip": "Random horizontal flip.",
    "mlp_widths": "Hidden widths of the mlp and mlp_wn networks (mlp_wn: default 1000,500,250,250,250).",
    "mlp_batch_norm": "Batch norm after each hidden layer of the mlp network.",
    "dropout": "Dropout rate of the convolutional networks.",
    "mlp_wn_input_noise": "mlp_wn: std of the Gaussian noise added to the inputs in training (default 0.3).",
    "mlp_wn_hidden_noise": "mlp_wn: std of the Gaussian noise added after each hidden ReLU in training "
                           "(default 0.5).",
    "wn_data_init": "Networks with weight-normalised layers (mlp_wn): before the first step, set each such "
                    "layer's scale and bias so that its outputs have mean 0 and std 1 on this many training "
                    "inputs (a seeded random subset; Salimans & Kingma 2016, as Improved-GAN on 500); 0: off.",
    "top_bn": "Batch norm on the logits (mlp, conv_small, conv_large, lenet), as the official VAT code.",
    "train_steps": "Number of parameter updates.",
    "batch_size": "Labeled examples per step (default 32; FixMatch and MixMatch 64).",
    "unlabeled_batch_size": "Unlabeled examples per step (default 128; 1500, the whole default "
                            "training set, for two_circles and moons; FixMatch 448, MixMatch 64).",
    "eval_batch_size": "Batch size of evaluation.",
    "seed": "Seed of initialisation, data order and every random draw of training.",
    "optimizer": "adam, adamw or sgd.",
    "learning_rate": "Initial learning rate.",
    "weight_decay": "Decoupled weight decay (0 disables).",
    "momentum": "Adam beta_1 or SGD momentum.",
    "lr_schedule": "vat_linear (constant, then linear decay to 0; the default), constant, cosine or exponential "
                   "(times lr_decay_rate every lr_decay_steps, as the official VAT MNIST code; xVAT's MNIST "
                   "default).",
    "lr_decay_start": "Fraction of training after which vat_linear starts decaying.",
    "lr_decay_rate": "Factor of the exponential schedule (default 0.9; xVAT on MNIST 0.95).",
    "lr_decay_steps": "Steps between two decays of the exponential schedule.",
    "eval_ema": "Evaluate and export an EMA copy of the weights.",
    "ema_decay": "Decay of the EMA weights / mean teacher.",
    "bn_recalibration": "After training, re-estimate the batch-norm statistics of the evaluated network as "
                        "the average batch statistics over training inputs (the official VAT MNIST code's "
                        "'finetune batch stat'); training-time statistics come from the labeled batches only.",
    "bn_recalibration_examples": "Training inputs (a seeded random subset) used by --bn_recalibration.",
    "jit_compile": "Compile the train step with XLA.",
    "steps_per_execution": "Training steps per call of the compiled train function (Keras' steps_per_execution; "
                           "default 1, 50 for two_circles and moons): fewer Python round trips for small "
                           "models, same results; evaluations, checkpoints and logs keep their steps.",
    "eval_every": "Steps between test evaluations.",
    "checkpoint_every": "Steps between checkpoints.",
    "log_every": "Steps between TensorBoard summaries.",
    "verbose": "Progress bar: 1 on, 0 off.",
    "export": "Write a SavedModel to WORKDIR/export/<version> at the end.",
    "mixed_precision": "float32, mixed_float16 or mixed_bfloat16.",
    "strategy": "default (one device), mirrored (all devices of this host) or multi_worker (the hosts "
                "in TF_CONFIG); the global batch is split across replicas.",
    "sync_batch_norm": "Batch-norm statistics over the global batch (all replicas) instead of each replica's.",
}


def _define(name, annotation: str, default, help_text):
    annotation = str(annotation)
    if "bool" in annotation:
        flags.DEFINE_bool(name, default, help_text)
    elif "float" in annotation:
        flags.DEFINE_float(name, default, help_text)
    elif "int" in annotation:
        flags.DEFINE_integer(name, default, help_text)
    elif "tuple" in annotation:
        flags.DEFINE_list(name, default, help_text)
    else:
        flags.DEFINE_string(name, default, help_text)


def define_flags():
    for field in dataclasses.fields(Config):
        if field.name == "method_params":
            continue
        if field.name == "method":
            flags.DEFINE_enum("method", field.default, sorted(hparams.PARAMS), HELP["method"])
            continue
        _define(field.name, field.type, field.default, HELP.get(field.name, field.name))
    for name, field in hparams.param_fields().items():
        _define(name, field.type, None, f"{field.metadata.get('help', '')} (default {field.default}, "
                                         f"or the dataset's)")


# The groups of ``--help`` (every Config field but method_params is in one; then one group per method).
FLAG_GROUPS = {
    "run": ("method", "workdir", "overwrite", "seed", "train_steps", "eval_every", "checkpoint_every",
            "log_every", "verbose", "export", "steps_per_execution", "jit_compile", "mixed_precision", "strategy",
            "sync_batch_norm"),
    "data": ("dataset", "num_labeled", "balanced", "split_seed", "validation_size", "data_dir", "tfds_manual_dir",
             "noise", "circles_factor", "num_train_synthetic", "num_test_synthetic", "zca", "augment_translate", "augment_flip",
             "batch_size", "unlabeled_batch_size", "eval_batch_size"),
    "network": ("network", "mlp_widths", "mlp_batch_norm", "top_bn", "dropout", "mlp_wn_input_noise",
                "mlp_wn_hidden_noise", "wn_data_init", "eval_ema", "ema_decay", "bn_recalibration", "bn_recalibration_examples"),
    "optimizer": ("optimizer", "learning_rate", "weight_decay", "momentum", "lr_schedule", "lr_decay_start",
                  "lr_decay_rate", "lr_decay_steps"),
}


def help_groups() -> dict:
    """FLAG_GROUPS, then "method <name>": the flags of each method's hyper-parameters."""
    groups = dict(FLAG_GROUPS)
    for name in sorted(hparams.PARAMS):
        fields = [f.name for f in hparams.flag_fields(hparams.get_params(name))]
        if fields:
            groups[f"method {name}"] = tuple(fields)
    return groups


def grouped_help(flag_values) -> str:
    """The flags of bin/train.py by group, each with its help and default."""
    lines = [__doc__.strip(), ""]
    for group, names in help_groups().items():
        lines.append(f"{group} flags:")
        for name in names:
            flag = flag_values[name]
            default = f" (default: {flag.default_as_str})" if flag.default is not None else (
                " (default: per data set and method)" if group in FLAG_GROUPS else "")
            lines.append(f"  --{name}: {flag.help}{default}")
        lines.append("")
    lines.append("Also: --helpfull (every flag, absl's included).")
    return "\n".join(lines)


def config_from_flags(flag_values) -> Config:
    values = {}
    for field in dataclasses.fields(Config):
        if field.name == "method_params":
            continue
        value = flag_values[field.name].value
        if field.name == "mlp_widths" and value is not None:
            value = tuple(int(v) for v in value)
        values[field.name] = value
    values["method_params"] = {name: flag_values[name].value for name in hparams.param_fields()
                               if flag_values[name].present}
    return Config(**values)


def main(argv):
    del argv
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # keep the progress bar readable
    from tf_advssl import training  # heavy imports after flag parsing (fast --help)

    def body():
        metrics = training.run(config_from_flags(flags.FLAGS))
        print({k: metrics[k] for k in ("test_error", "train_steps", "wall_time_s", "steps_per_second")
               if k in metrics})

    return cli.run_main(body, {training.TrainingDivergedError: 3})


if __name__ == "__main__":
    define_flags()
    if any(arg in ("--help", "-h", "-?", "--helpshort") for arg in sys.argv[1:]):
        print(grouped_help(flags.FLAGS))
        sys.exit(0)
    app.run(lambda argv: sys.exit(main(argv)))
