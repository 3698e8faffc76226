"""The optional C extension; everything else is in pyproject.toml.

mimecast_exporter/_pagesum.c sums a page of well-formed messages at a few per cent of
the Python loop's CPU. It is optional: where it cannot be compiled (no C
compiler, no Python headers) the build goes on without it and the exporter
gives the same figures at the loop's cost. MIMECAST_EXPORTER_REQUIRE_C=1 makes
a failed compile an error instead (CI and the container image set it).
"""

import os

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "mimecast_exporter._pagesum",
            sources=["mimecast_exporter/_pagesum.c", "mimecast_exporter/_pageframe.c"],
            depends=["mimecast_exporter/_pageframe.h"],
            optional=os.environ.get("MIMECAST_EXPORTER_REQUIRE_C") != "1",
        )
    ]
)
