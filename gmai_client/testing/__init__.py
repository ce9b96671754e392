"""Test doubles that exercise the client's real code paths, shipped for tests and benchmarks.

* ``fake_api``    a loopback server speaking OpenAI Chat Completions and Anthropic Messages, with
                  an answer oracle, request records, latency, seeded faults and a Retry-After checker
                  (needs ``aiohttp``, in the ``dev`` extra)
* ``tiny_models`` tiny random-weight vision-language models built offline (needs the ``torch`` extra)

Nothing is imported here, so ``import gmai_client.testing`` needs neither optional dependency.
"""
