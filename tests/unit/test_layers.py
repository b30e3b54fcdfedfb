"""kontain's floors only look down: no module imports one from a floor above its own.

The drawing in docs/ARCHITECTURE.md, from the bottom: linux (the ABI's numbers, host
calls) < kvm (typed ioctls) < machine (one VM) < mm (the guest's memory) < loader (ELF)
< monitor (processes, threads, signals, paths, km's walls) < syscalls (the handlers)
< oci (krun's containers) < cli. Every import counts, even one inside a function or
for type checking only.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "kontain"
FLOORS = ["linux", "kvm", "machine", "mm", "loader", "monitor", "syscalls", "oci", "cli"]


def floor_of(module: str) -> int:
    """The floor of a dotted module name inside kontain (the package root is the top)."""
    parts = module.split(".")
    if module == "kontain":
        return 0  # the package itself holds only its version
    if len(parts) < 2 or parts[1] not in FLOORS:
        return len(FLOORS)  # kontain/__main__: the top
    return FLOORS.index(parts[1])


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every kontain import in a source file."""
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("kontain"):
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("kontain")]
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(PACKAGE)) for p in MODULES])
def test_no_module_imports_from_a_floor_above(path: Path) -> None:
    module = ".".join(("kontain",) + path.relative_to(PACKAGE).with_suffix("").parts)
    mine = floor_of(module)
    upward = [f"line {line}: {name}" for line, name in imports_of(path) if floor_of(name) > mine]
    assert not upward, f"{module} imports from a floor above its own: {upward}"


def test_every_package_is_on_a_floor() -> None:
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert packages <= set(FLOORS), f"not in the drawing: {packages - set(FLOORS)}"
