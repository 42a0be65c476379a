"""docs/client.md: every Python example runs, as a script of its own, against a real stack."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.stack import Stack

DOC = Path(__file__).parents[2] / "docs" / "client.md"
DOC_ADDRESS = "127.0.0.1:4222"
"""Where the examples expect `esdb up`; the test points them at its own stack instead."""


def doc_examples() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", DOC.read_text(), flags=re.DOTALL | re.MULTILINE)


def test_the_doc_has_examples_that_use_the_default_address() -> None:
    examples = doc_examples()
    assert len(examples) >= 4
    assert all(DOC_ADDRESS in example for example in examples)


@pytest.mark.parametrize("index", range(len(doc_examples())))
def test_a_doc_example_runs(stack: Stack, index: int) -> None:
    address = stack.url.split(",")[0].removeprefix("nats://")
    code = doc_examples()[index].replace(DOC_ADDRESS, address)
    ran = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert ran.returncode == 0, f"example {index + 1} of {DOC.name} failed:\n{ran.stderr}"
