"""``python -m alignkit.cli``."""

from alignkit.cli import app

app()
