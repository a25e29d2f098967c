from __future__ import annotations

import importlib.util

from tests.conftest import FIXTURES


def test_committed_fixtures_are_what_the_generator_writes():
    spec = importlib.util.spec_from_file_location("make_fixtures", FIXTURES / "make_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name, content in module.build().items():
        assert (FIXTURES / name).read_bytes() == content.encode(), f"fixtures/{name} differs: run fixtures/make_fixtures.py"
