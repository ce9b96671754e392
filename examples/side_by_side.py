"""GPT-4o next to an open model you serve yourself (vLLM's OpenAI-compatible server, or Triton).

    export OPENAI_API_KEY=...
    python examples/side_by_side.py --open-model openai:llava-hf/llava-1.5-7b-hf@http://gpu-box:8000/v1
    python examples/side_by_side.py --open-model triton:llava@gpu-box:8001 --data GMAI-MMBench_VAL \\
        --select "department=Ophthalmology" --rpm 500 --tpm 300000
    python examples/side_by_side.py --demo        # no key, no network: see below

The same as ``python -m gmai_client run --model openai:gpt-4o --model SPEC ...``, written as a
script to show the SDK: one ``RunConfig``, one ``run``, then the comparison read from the result.
The API model is rate-limited (``--rpm``/``--tpm``, applied per endpoint), retried on 429/5xx
honouring Retry-After, and cached, so rerunning the script after a crash or a Ctrl-C only sends
what is missing.

``--demo`` stands a fake OpenAI-compatible server on 127.0.0.1 in for GPT-4o (it knows the
sample's answers, and fails 10% of requests with 429/500/503 to show the retries) and compares it
with the random baseline on the bundled sample (the fake needs ``aiohttp``, in the ``dev`` extra).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
from collections.abc import Iterator

from gmai_client import RunConfig, run
from gmai_client.config import parse_model_spec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--api-model", default="openai:gpt-4o", help="the API model's spec")
    parser.add_argument("--open-model", default=None, help="the open model's spec (vLLM via openai:, or triton:)")
    parser.add_argument("--data", default="sample", help="sample, GMAI-MMBench_VAL, or TSV path(s)")
    parser.add_argument("--select", action="append", default=[], help="lexical-tree selection")
    parser.add_argument("--rpm", type=float, default=None, help="API requests per minute")
    parser.add_argument("--tpm", type=float, default=None, help="API tokens per minute")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--demo", action="store_true", help="a local fake in place of GPT-4o, vs random")
    args = parser.parse_args()
    if not args.demo and not args.open_model:
        parser.error("give --open-model SPEC (or --demo)")

    with _demo_server() if args.demo else contextlib.nullcontext() as demo_url:
        api_spec = f"openai:gpt-4o@{demo_url}" if demo_url else args.api_model
        models = [
            parse_model_spec(api_spec, {"label": "gpt-4o", **({"rpm": str(args.rpm)} if args.rpm else {})}),
            parse_model_spec(args.open_model or "random", {"label": "open model" if args.open_model else "random"}),
        ]
        config = RunConfig.build(
            models=tuple(models),
            data=(args.data,),
            select=tuple(args.select),
            limit=args.limit,
            tpm=args.tpm,
            concurrency=16,
            cache=not args.demo,  # the demo's fake answers are not worth keeping
        )
        result = asyncio.run(run(config))

    for outcome in result.outcomes:
        sent = f"{outcome.sent} requests, {outcome.cache_hits} from cache, {outcome.throttled} throttled"
        print(f"{outcome.spec.label}: {outcome.done} items ({outcome.errors} errors; {sent})")
    print(f"tables, report.html and predictions: {result.run_dir}")


@contextlib.contextmanager
def _demo_server() -> Iterator[str]:
    from gmai_client.data.dataset import iter_items, open_dataset
    from gmai_client.data.splits import sample_path
    from gmai_client.testing.fake_api import FakeAPI, Faults, oracle
    from gmai_client.types import Item

    items = [e for e in iter_items(open_dataset([sample_path()])) if isinstance(e, Item)]
    faults = Faults({"429": 0.04, "500": 0.03, "503": 0.03}, seed=1, retry_after=0.5)
    os.environ.setdefault("OPENAI_API_KEY", "sk-demo-not-a-real-key")
    with FakeAPI(answers=oracle(items), faults=faults, latency=0.05) as api:
        yield api.base_url_openai


if __name__ == "__main__":
    main()
