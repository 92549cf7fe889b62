"""Fixtures of the an_inpaint tests."""

import pytest
from inpaint_helpers import write_paris_tree


@pytest.fixture
def paris_root(tmp_path):
    """A Paris StreetView tree of real image files (5 training JPGs of 936x537, 3 evaluation PNGs of 227x227)."""
    return write_paris_tree(tmp_path / "paris")
