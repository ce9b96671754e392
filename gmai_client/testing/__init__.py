"""Test doubles that exercise the client's real code paths, shipped for tests, benchmarks and tools.

The fake model API (needs ``aiohttp``, in the ``dev`` extra):

* ``fake_api``          a loopback server speaking OpenAI Chat Completions and Anthropic Messages, with
                        an answer oracle, request records, latency, seeded faults and a Retry-After
                        checker; ``python -m gmai_client.testing.fake_api`` runs it out of process
* ``fake_wire``         its wire formats: request parsing, success bodies, the oracle's item keys
* ``fake_errors``       the vendors' error JSON, and which error answers a failed request
* ``fake_faults``       fault kinds, seeded draws, retry hints in every dialect, broken connections
* ``fake_loopback``     an aiohttp app served from its own event loop in a background thread
* ``fake_batches``      OpenAI's Files + Batch API and Anthropic's Message Batches on a ``FakeAPI``;
                        ``python -m gmai_client.testing.fake_batches`` runs both out of process
* ``fake_batch_files``  OpenAI's Files endpoints (upload, list, download, delete)
* ``fake_batch_store``  the batch APIs' state directory (files, batches, results, the call log)
* ``fake_batch_states`` how a batch moves through its statuses and what it delivers when it ends
* ``fake_batch_wire``   what the batch endpoints accept and refuse, and the batch objects
* ``fake_batch_cli``    the batch APIs' command-line flags

Data and models:

* ``synthetic``         deterministic GMAI-format TSV rows with drawn images (the shipped sample)
* ``synthetic_tree``    the lexical tree the rows are drawn from, and the order they cover it in
* ``synthetic_images``  the rows' watermarked PNG images, drawn once per pool slot and reused
* ``answer_corpus``     items and free-text answers in every style, for the conformance tests
* ``tiny_models``       tiny random-weight vision-language models built offline (needs the ``torch`` extra)
* ``triton_server``     the server side of the Triton model contract, via PyTriton (``dev`` extra)
* ``ray_hooks``         a Ray model actor that dies mid-request, for the tests of actor restarts

Nothing is imported here, so ``import gmai_client.testing`` needs none of the optional dependencies.
"""
