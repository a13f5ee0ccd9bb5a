"""Run the docstring examples of every module of the package."""

import doctest
import importlib
import pkgutil

import pytest

import superpose.construct
import superpose.examples
import superpose.proofs
import superpose.train
import superpose.verify

# The sub-packages live in their own top-level folders (see pyproject.toml), so walk each.
PACKAGES = [superpose, superpose.construct, superpose.verify, superpose.proofs, superpose.train, superpose.examples]
MODULES = sorted({p.__name__ for p in PACKAGES}
                 | {m.name for p in PACKAGES for m in pkgutil.walk_packages(p.__path__, p.__name__ + ".")})


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


def test_every_subpackage_is_walked():
    packages = {p.removeprefix("superpose.") for p in MODULES if p.count(".") == 1 and
                importlib.import_module(p).__file__.endswith("__init__.py")}
    assert packages == {"construct", "verify", "proofs", "train", "examples"}
