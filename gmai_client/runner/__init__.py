"""The runner part: config to ready objects (wiring), the concurrent loop, the judge, progress, plan,
and batch mode. The only part that knows about concurrency."""
