"""docs/python-api.md: every ```python block in it is a complete script that runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "python-api.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", DOC.read_text(), re.S | re.M)


def test_the_guide_has_its_examples():
    assert len(BLOCKS) >= 5


@pytest.mark.usefixtures("kvm")
@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_example_runs(index):
    code = compile(BLOCKS[index], f"{DOC.name} example {index + 1}", "exec")
    exec(code, {"__name__": f"docs_example_{index + 1}"})  # noqa: S102 - our own docs
