"""Write a synthetic GMAI-MMBench-format TSV (by default the shipped gmai_client/data/sample.tsv).

    python tools/make_sample.py [--items 300] [--seed 0] [--out gmai_client/data/sample.tsv]
                                [--image-size 96] [--no-answer]

Prints the file size, the throughput and how much of the lexical tree the items cover. The shipped
sample is exactly the default invocation; tests/test_synthetic.py checks it has not drifted.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Run from a checkout without installing the package.
sys.path.insert(0, str(ROOT))

from gmai_client.testing.synthetic import (  # noqa: E402
    DEPARTMENT_VIEW,
    GRANULARITY_VIEW,
    NO_DEPARTMENT,
    TASK_VIEW,
    tree_index,
    write_tsv,
)

DEFAULT_OUT = ROOT / "gmai_client" / "data" / "sample.tsv"


def coverage(path: Path) -> dict[str, Counter[str]]:
    """Item counts per task, department (empty cell -> N/A), granularity and modality of a TSV."""
    csv.field_size_limit(sys.maxsize)  # base64 image cells are far beyond csv's 128 kB default
    counts: dict[str, Counter[str]] = {v: Counter() for v in (TASK_VIEW, DEPARTMENT_VIEW, GRANULARITY_VIEW, "modality")}
    with path.open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            for view, counter in counts.items():
                value = row[view]
                counter[value or NO_DEPARTMENT if view == DEPARTMENT_VIEW else value] += 1
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=300, help="number of items (default 300)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output TSV path")
    parser.add_argument("--image-size", type=int, default=96, help="image side in pixels (default 96)")
    parser.add_argument("--no-answer", action="store_true", help="omit the answer column, like TEST files")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    path = write_tsv(args.out, args.items, seed=args.seed, image_size=args.image_size, with_answer=not args.no_answer)
    elapsed = time.perf_counter() - start
    size = path.stat().st_size
    print(f"wrote {path}: {args.items} items, {size} bytes in {elapsed:.2f} s ({size / 1e6 / elapsed:.1f} MB/s)")

    index = tree_index()
    universes = {
        TASK_VIEW: index.tasks,
        DEPARTMENT_VIEW: index.departments,
        GRANULARITY_VIEW: index.granularities,
        "modality": index.modalities,
    }
    for view, counter in coverage(path).items():
        missing = sorted(set(universes[view]) - set(counter))
        line = f"  {view}: {len(counter)}/{len(universes[view])} covered"
        print(line + (f" (missing: {', '.join(missing)})" if missing else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
