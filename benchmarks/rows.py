"""Row syntax shared by the benchmark scripts: METHOD[:flag=value[:flag=value...]]."""
import json


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
