"""The run folder: its name, what it must agree with before it is reused, and its lock.

A run folder holds the records of one configuration, so it has an identity: everything that can
change an answer or the set of items asked.

- the data files (absolute paths), the selection, the prompt template, the sampling parameters and
  the seed;
- per model (and for the judge): its label, backend, target, endpoint as written, every ``-B``
  option except the answer-neutral ones (label, rpm, tpm, timeouts, the key's variable, transport
  and scheduling options: ``Neutral``, which the runner takes from the registry, since this module
  is part of the results and may not import the backends), and the backend's resolved
  ``identity()``: the model and the endpoint it will really call (after ``@URL``, ``base_url=``,
  ``OPENAI_BASE_URL``...), the image options that change what the model sees.

Pace and patience (concurrency, rates, attempts, deadlines, budgets, cache, executor) are not part
of it: they decide how a run proceeds, not what it answers (``config.POLICY_FIELDS``).

The default folder name ends in a hash of the identity and ``limit``: a different command gets a
different folder. A folder chosen by name (``--run-name``, ``--resume``) is compared with the
identity saved in its config.json and refused when they differ, naming what differs: its records
came from another configuration and must not be counted as this one's. ``limit`` alone may grow
(the items of a smaller limit are the first ones of the larger).

``RunLock`` keeps a second process out of a folder in use: ``fcntl.flock`` on ``.lock``, which the
kernel drops when its holder dies (a stale lock never blocks); the file holds the holder's pid for
the error message, and goes when its holder lets go (``lock``'s docstring says why that is safe). A
``run``, ``report`` and ``batches cancel`` each hold it. Where ``fcntl`` is missing (Windows) there is
no lock.

The folder's documents are read and written here and nowhere else, typed and versioned
(``SCHEMA_VERSION``): ``config.json`` (``SavedConfig``: the resolved configuration without secrets,
the data files, the identity, versions) and ``metrics.json`` (``MetricsDocument``: per-model
``ModelMetrics``, the comparison, ``RunFigures`` - what only the run knew - and what the figures
mean). ``records.jsonl`` is the run's journal (``records``); ``items`` keeps it in step with the
data as read now (a changed or removed row of an edited file is not counted). Reports read these
types, never raw JSON. A document of an older version is read with defaults for what it lacks.
"""

from __future__ import annotations

from gmai_client.results.rundir.documents import (
    COMPARE_FILE,
    CONFIG_FILE,
    METRICS_FILE,
    RECORDS_FILE,
    SCHEMA_VERSION,
    JudgeFigures,
    MetricsDocument,
    ModelFigures,
    RunFigures,
    SavedConfig,
    read_config,
    read_existing_config,
    read_metrics,
    run_figures_json,
    save_rules,
    write_config,
    write_metrics,
)
from gmai_client.results.rundir.fingerprint import Neutral, check_reuse, decisive, folder_name, identity, make_run_dir
from gmai_client.results.rundir.lock import LOCK_FILE, RunLock, holder
from gmai_client.results.rundir.selection import count_selected

__all__ = [
    "COMPARE_FILE",
    "CONFIG_FILE",
    "LOCK_FILE",
    "METRICS_FILE",
    "RECORDS_FILE",
    "SCHEMA_VERSION",
    "JudgeFigures",
    "MetricsDocument",
    "ModelFigures",
    "Neutral",
    "RunFigures",
    "RunLock",
    "SavedConfig",
    "check_reuse",
    "count_selected",
    "decisive",
    "folder_name",
    "holder",
    "identity",
    "make_run_dir",
    "read_config",
    "read_existing_config",
    "read_metrics",
    "run_figures_json",
    "save_rules",
    "write_config",
    "write_metrics",
]
