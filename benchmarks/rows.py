"""Row syntax shared by the benchmark scripts: METHOD[:flag=value[:flag=value...]], and where
matrix.py keeps a row's runs."""
import json
import os


def parse_row(row, common=()):
    """(method, {flag: value}) of a row; ``common`` flag=value items apply first."""
    method, *settings = row.split(":")
    values = {}
    for item in list(common) + settings:
        key, value = item.split("=")
        if value in ("True", "False"):
            values[key] = value == "True"
        else:
            try:
                values[key] = json.loads(value)
            except json.JSONDecodeError:  # a plain string, e.g. x_mode=transductive
                values[key] = value
    return method, values


def run_path(dataset, row, seed, tag="", validation_size=0):
    """The run directory of ``row`` on ``dataset``, seed ``seed``, relative to matrix.py's
    --runs_dir (and --results_dir): ``DATASET[_TAG][_valN]/ROW/seedK``."""
    name = row.replace(":", "_").replace("=", "")
    group = dataset + (f"_{tag}" if tag else "") + (f"_val{validation_size}" if validation_size else "")
    return os.path.join(group, name, f"seed{seed}")
