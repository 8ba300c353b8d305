"""``alignkit`` command line: a thin layer over the readers (:mod:`alignkit.io`) and the analyses.

Tables go to stdout, progress and notes to stderr; ``--json`` prints only JSON on stdout.
User errors (bad files, unknown measures, bad parameters) print one red line on stderr and exit
with status 2, without a traceback.

One module per command; :mod:`alignkit.cli._app` registers them in workflow order. Command modules
import numpy, torch and the analyses inside the command bodies, so ``alignkit --help`` starts fast.
"""

from alignkit.cli._app import app

__all__ = ["app"]
