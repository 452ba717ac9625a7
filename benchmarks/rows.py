"""Row syntax shared by the benchmark scripts: METHOD[:flag=value[:flag=value...]]."""
import json


def parse_row(row, common=()):
    """(method, {flag: value}) of a row; ``common`` flag=value items apply first."""
    method, *settings = row.split(":")
    values = {}
    for item in list(common) + settings:
        key, value = item.split("=")
        values[key] = json.loads(value) if value not in ("True", "False") else value == "True"
    return method, values
