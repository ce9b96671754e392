"""Batch mode: items sent through the vendors' batch APIs, followed, collected into records."""
