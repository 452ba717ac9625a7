"""Exit codes shared by the binaries in bin/ (their flags stay defined there).

Light on purpose: imports nothing heavy, so that ``--help`` stays fast.
"""
import sys
from typing import Callable, Mapping, Optional, Union

from tf_advssl.config import ConfigError

ExceptionTypes = Union[type, tuple]


def run_main(body: Callable[[], Optional[int]], errors: Optional[Mapping[ExceptionTypes, int]] = None) -> int:
    """Call ``body()`` and return its exit code (0 if it returns None).

    A ConfigError (bad user input) prints ``error: <message>`` to stderr and
    returns 2; ``errors`` maps further exception types (or tuples of them) to
    exit codes, handled the same way and checked in order after ConfigError.
    Any other exception propagates.
    """
    handlers = [(ConfigError, 2), *(errors or {}).items()]
    try:
        code = body()
    except Exception as error:
        for types, exit_code in handlers:
            if isinstance(error, types):
                print(f"error: {error}", file=sys.stderr)
                return exit_code
        raise
    return 0 if code is None else code
