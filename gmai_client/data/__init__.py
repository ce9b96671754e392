"""The data part: the benchmark's files as items (the TSV reader with pandas' cell rules, the splits and
their download, the lexical-tree selection), and the files the package ships (sample, lexical tree,
the paper's tables, prices, model families, the report's CSS and JS)."""
