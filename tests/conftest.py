import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave the ``slow`` tests out unless the ``-m`` expression mentions them (``-m slow``, ``-m 'slow or models'``).

    Done here rather than with ``addopts = -m 'not slow'``, so that a developer's own ``-m`` (``-m 'not models'``,
    ``-m 'not browser'``) narrows the default run instead of replacing it and pulling the slow tests back in.
    """
    if "slow" in (config.getoption("markexpr") or ""):
        return
    slow = [item for item in items if item.get_closest_marker("slow") is not None]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if item.get_closest_marker("slow") is None]


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
