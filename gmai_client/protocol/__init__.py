"""The protocol part: pure functions from an item to a request and from an answer to a score: the
prompt, VLMEvalKit's rule sets and read-back, normalization, scoring, metrics, prices. No I/O."""
