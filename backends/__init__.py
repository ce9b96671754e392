"""Built-in backends (installed as ``gmai_client.backends``): one module per backend family.

Each translates ``Request`` <-> a wire format and vendor errors -> ``gmai_client.errors``; none
sets policy (no sleeps, no retries, no limits). Modules whose vendor package is missing raise
``MissingExtra`` on import, naming the pip extra to install.
"""
