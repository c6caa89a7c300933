"""Hypothesis profiles of the protocol fuzz tests (tests/protocol/test_fuzz.py).

``--hypothesis-profile=fuzz-long`` (given a path under tests/protocol, so that this file is loaded
before the option is read) runs the fuzz tests with 100 000 examples each; the environment variable
``LOGSYNC_FUZZ_EXAMPLES=N`` sets any number. By default they run a few hundred, in seconds.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

FUZZ_LONG_EXAMPLES = 100_000

settings.register_profile(
    "fuzz-long",
    max_examples=FUZZ_LONG_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
