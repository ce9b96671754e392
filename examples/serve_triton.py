"""Serve a transformers vision-language model on Triton Inference Server, for the ``triton`` backend.

    python examples/serve_triton.py --model-path /models/llava-1.5-7b-hf --name llava \\
        [--host 0.0.0.0] [--http-port 8000] [--grpc-port 8001] [--max-batch-size 8]
    python examples/serve_triton.py --echo --name echo          # no torch: answers option letters

then, from any machine that can reach it::

    python -m gmai_client run --model triton:llava@gpu-box:8001      # gRPC
    python -m gmai_client run --model triton:llava@gpu-box:8000      # HTTP

The model is loaded with ``AutoModelForImageTextToText`` and ``AutoProcessor`` from a local
directory (no download), put behind the contract described in ``gmai_client.backends.triton``
(inputs ``prompt``, ``image``, optional ``max_tokens``/``temperature``; output ``text``), and
served with PyTriton's dynamic batching: concurrent client requests become one batched
``generate`` (greedy; sampled when a request's temperature > 0). The image arrives as the
dataset's PNG bytes and is decoded with PIL here. ``--echo`` serves a model that answers the first
option letter of each prompt, for trying the client end to end without a GPU.

Ctrl-C or SIGTERM stops the server cleanly (the tritonserver child and its workspace included).
Needs ``pip install nvidia-pytriton`` plus torch and transformers (not for ``--echo``).
"""

from __future__ import annotations

import argparse
import logging

from gmai_client.testing.triton_server import Binding, make_echo_infer, make_vlm_infer, serve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--model-path", help="local directory with the model's weights and processor")
    what.add_argument("--echo", action="store_true", help="serve the torch-free echo model instead")
    parser.add_argument("--name", default="llava", help="model name clients use (triton:NAME@host:port)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--max-batch-size", type=int, default=8, help="largest batch the dynamic batcher forms")
    parser.add_argument("--max-tokens", type=int, default=64, help="new tokens per answer when a request does not say")
    parser.add_argument(
        "--private-statistics",
        action="store_true",
        help="guard Triton's statistics API (then clients cannot list the served models in their errors)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    if args.echo:
        infer = make_echo_infer("echo")
    else:
        infer = make_vlm_infer(args.model_path, default_max_tokens=args.max_tokens)

    def ready() -> None:
        logging.info(
            "serving %r: http://%s:%d and grpc://%s:%d (Ctrl-C to stop)",
            args.name,
            args.host,
            args.http_port,
            args.host,
            args.grpc_port,
        )

    try:
        serve(
            [Binding(args.name, infer, max_batch_size=args.max_batch_size)],
            host=args.host,
            http_port=args.http_port,
            grpc_port=args.grpc_port,
            list_models=not args.private_statistics,
            on_ready=ready,
        )
    except KeyboardInterrupt:  # a signal while the model was still loading
        logging.info("interrupted")


if __name__ == "__main__":
    main()
