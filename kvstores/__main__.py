"""The ``kvstores`` command (console script) and ``python -m kvstores``; see `kvstores.cli`."""

from __future__ import annotations

import sys
from typing import NoReturn

MISSING_EXTRA = 'kvstores: the command line needs its extra: pip install "kvstores[cli]"'
_CLI_DEPENDENCIES = ("click", "tqdm")


def main() -> NoReturn:
    """Run the command line; without click or tqdm, say which extra to install and exit 2."""
    try:
        from kvstores import cli
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] not in _CLI_DEPENDENCIES:
            raise
        print(MISSING_EXTRA, file=sys.stderr)
        sys.exit(2)
    sys.exit(cli.run())


if __name__ == "__main__":
    main()
