"""Package discovery, and only that: every package under ``gmai_client/`` is found, never listed by hand
(a hand list once left out ``gmai_client.results.rundir`` and the installed wheel did not start), and the top-level
``backends/`` folder is installed as ``gmai_client.backends`` (``backends`` is another project's name on PyPI).
Everything else about the build is in pyproject.toml."""

from setuptools import find_packages, setup

BACKENDS = "gmai_client.backends"

setup(
    packages=[
        *find_packages(include=["gmai_client", "gmai_client.*"]),
        BACKENDS,
        *(f"{BACKENDS}.{name}" for name in find_packages("backends")),
    ],
    package_dir={BACKENDS: "backends"},
)
