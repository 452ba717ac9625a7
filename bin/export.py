"""Re-export an existing run as a new SavedModel version for TF Serving.

    python bin/export.py --workdir=W [--version=N]

Restores the latest checkpoint of W and writes W/export/<version>/ (the next
free version by default; an existing version directory is never replaced).
"""
import os
import sys

from absl import app, flags

flags.DEFINE_string("workdir", None, "Run directory written by bin/train.py.")
flags.DEFINE_integer("version", None, "Version number (default: next free).")
flags.mark_flag_as_required("workdir")


def main(argv):
    del argv
    from tf_advssl import export, training
    from tf_advssl.config import ConfigError

    workdir = flags.FLAGS.workdir
    if not os.path.exists(os.path.join(workdir, "config.json")):
        print(f"error: --workdir={workdir} holds no run (no config.json)", file=sys.stderr)
        return 2
    try:
        model, _, spec, preprocessor = training.restore_model(workdir)
        path = export.export_run_model(model, spec, preprocessor, os.path.join(workdir, "export"),
                                       flags.FLAGS.version)
    except (ConfigError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    app.run(lambda argv: sys.exit(main(argv)))
