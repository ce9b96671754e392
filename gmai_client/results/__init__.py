"""The results part: the run folder on disk (identity, lock, config, records, the batch journal) and
everything written from records: metrics files, reports (console, Markdown, HTML), predictions, plots."""
