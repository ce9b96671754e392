"""report.html: one self-contained page (tables, charts, the lexical tree, the gallery, the paper's table)."""
