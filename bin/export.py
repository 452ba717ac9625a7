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
    from tf_advssl import cli, export, runs
    from tf_advssl.config import ConfigError

    def body():
        workdir = flags.FLAGS.workdir
        if not os.path.exists(os.path.join(workdir, "config.json")):
            raise ConfigError(f"--workdir={workdir} holds no run (no config.json)")
        model, _, spec, preprocessor = runs.restore_model(workdir)
        print(export.export_saved_model(model, os.path.join(workdir, "export"), spec=spec,
                                        preprocessor=preprocessor, version=flags.FLAGS.version))

    return cli.run_main(body, {FileExistsError: 2})


if __name__ == "__main__":
    app.run(lambda argv: sys.exit(main(argv)))
