"""Run the docstring examples of every module of the package."""

import doctest
import importlib
import pkgutil

import pytest

import superpose.construct
import superpose.proofs
import superpose.verify

# The sub-packages live in their own top-level folders (see pyproject.toml), so walk each.
PACKAGES = [superpose, superpose.construct, superpose.verify, superpose.proofs]
MODULES = sorted({p.__name__ for p in PACKAGES}
                 | {m.name for p in PACKAGES for m in pkgutil.walk_packages(p.__path__, p.__name__ + ".")})


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
