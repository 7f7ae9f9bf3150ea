"""Build hook for the one optional C extension; everything else is declared in pyproject.toml.

``ingest._binance_speedups`` turns the common Binance aggTrade frame into an event in one C call (see its
source for why). It is optional: without a C compiler the build goes on and flushwatch uses its pure-Python
paths, which produce the same events (tests/unit/test_binance_speedups.py holds the two to that).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "ingest._binance_speedups",
            sources=["ingest/_binance_speedups.c"],
            optional=True,
        )
    ]
)
