"""The policy part: every wait and every reuse around a backend: retries, rate limits, the response
cache, dispatch and balancing across endpoints. Policy wraps backends, never the other way round."""
