"""The package's version, in one low module: the build reads it (pyproject's dynamic version) and the run
folder's documents and reports import it without reaching back up to the package root."""

__version__ = "0.1.0"
