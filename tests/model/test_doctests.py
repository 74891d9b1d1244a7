"""The docstring examples of the model package run and hold."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ("model.labels", "model.loss", "model.metrics", "model.features", "model.avcpnet", "model.train")


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
