"""What a user sees of a command: its usage on `--help`, and one line (no traceback) for a mistake.

Every entry point (`python -m datagen`, `training`, `eval`, `training.vae`, `eval.vae`, `training.encode`,
`pipeline.study`, `eval.report`, `pipeline.quickstart`) ends in `run_cli`. A mistake in what the
user gave (a config value, a path, a dataset, a checkpoint, weights) raises a `UserError`
subclass whose message names the problem and the fix; `run_cli` prints it as
`PROG: error: MESSAGE` and exits with status 2. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

USAGE_ERROR = 2  # the exit status of a user error (as argparse uses)


class UserError(Exception):
    """A mistake in the user's input; the message says what is wrong and how to fix it.

    The base of every such error of the project (`ConfigError`, `DatasetError`, ...): raise a
    subclass, and the command line prints the message instead of a traceback.
    """


def wants_help(argv: list[str]) -> bool:
    """True when the command line asks for the usage text."""
    return any(a in ("-h", "--help") for a in argv)


def usage(doc: str, schema: type | None = None) -> str:
    """The `--help` text: the entry point's docstring, then every setting with its default."""
    text = (doc or "").strip()
    if schema is None:
        return text + "\n"
    from phyworld.config import describe

    return (
        f"{text}\n\nSettings, with their defaults: set them in CONFIG.yaml or as key=value (a list\n"
        f"whole as key=[...], one item's field as key.0.field=...).\n{describe(schema)}\n"
    )


def _is_rank0() -> bool:
    """Only one process of a distributed job prints the error (every rank sees the same one)."""
    return os.environ.get("RANK", "0") == "0"


def run_cli(
    prog: str,
    main: Callable[[list[str]], Any],
    doc: str,
    schema: type | None = None,
    argv: list[str] | None = None,
) -> int:
    """Run `main(argv)` as the command `python -m PROG`; returns its exit status.

    `--help` prints `usage(doc, schema)` (0); a `UserError` prints `PROG: error: MESSAGE` on
    stderr (2); otherwise `main`'s return value is the status (None: 0). Use it as
    `sys.exit(run_cli(...))` under `if __name__ == "__main__":`.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    if wants_help(argv):
        print(usage(doc, schema), end="", flush=True)
        return 0
    try:
        status = main(argv)
    except UserError as err:
        if _is_rank0():
            print(f"{prog}: error: {err}", file=sys.stderr, flush=True)
        return USAGE_ERROR
    return int(status or 0)
