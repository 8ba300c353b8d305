"""Where the examples find their data: ``--data-dir DIR`` or the environment variable ``ALIGNKIT_DATA``.

The data are not part of alignkit (licences, size); each example documents the files it reads below that folder
(e.g. ``DIR/bible/verses.tsv.gz``). A flag naming the file itself (``--data``, ``--dictionary``) overrides the folder.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import NoReturn

ENV = "ALIGNKIT_DATA"
#: embedding cache shared by the examples (embeddings are keyed by model and data, so sharing is safe)
DEFAULT_CACHE = Path(tempfile.gettempdir()) / "alignkit-exp-cache"


def add_data_dir(parser: argparse.ArgumentParser, layout: str) -> None:
    """``--data-dir`` (default ``$ALIGNKIT_DATA``); ``layout`` says what the example reads below it."""
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help=f"folder holding the example's data ({layout}); default: ${ENV}",
    )


def data_path(args: argparse.Namespace, relative: str, *, override: Path | None = None, what: str) -> Path:
    """``override`` if given, else ``<--data-dir or $ALIGNKIT_DATA>/<relative>``; exits with a clear message
    when neither is given or the path does not exist."""
    if override is not None:
        path, source = override, "the path given"
    else:
        root = args.data_dir or (Path(os.environ[ENV]) if os.environ.get(ENV) else None)
        if root is None:
            _fail(f"{what}: not part of alignkit; pass --data-dir DIR or set {ENV}=DIR (reads DIR/{relative})")
        path = root / relative
        source = "--data-dir" if args.data_dir else f"${ENV}"
    if not path.exists():
        _fail(f"{what}: {path} does not exist ({source})")
    return path


def _fail(message: str) -> NoReturn:
    print(f"{Path(sys.argv[0]).name}: error: {message}", file=sys.stderr)
    raise SystemExit(2)
