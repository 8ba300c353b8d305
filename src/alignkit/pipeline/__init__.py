"""Declarative runs: a validated YAML config becomes a plan of jobs (embed, atlas, select, fit,
evaluate), run locally or on Ray, ending in Parquet tables, run.json and an HTML report.

>>> from alignkit.pipeline import load_config, plan_run, run
>>> result = run("config.yaml")            # results/<name>/...
"""

from alignkit.pipeline.config import ConfigError as ConfigError
from alignkit.pipeline.config import RunConfig as RunConfig
from alignkit.pipeline.config import bundled_config as bundled_config
from alignkit.pipeline.config import load_config as load_config
from alignkit.pipeline.plan import Job as Job
from alignkit.pipeline.plan import Plan as Plan
from alignkit.pipeline.runner import RunFailed as RunFailed
from alignkit.pipeline.runner import RunResult as RunResult
from alignkit.pipeline.runner import collect_tables as collect_tables
from alignkit.pipeline.runner import plan_run as plan_run
from alignkit.pipeline.runner import run as run
