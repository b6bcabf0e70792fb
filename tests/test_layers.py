"""The layout's rules, checked: import-linter's layer contracts and no private name imported."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("edge", "server", "protocol")


def _module_name(path: Path) -> str:
    """Dotted module name of a source file under ROOT."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(dotted: str) -> bool:
    """True when dotted names a module or package of this repository."""
    base = ROOT.joinpath(*dotted.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def private_imports(files: list[Path]) -> list[str]:
    """`file:line name` for every private name one module takes from another."""
    found = []
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        me = _module_name(path)
        modules: dict[str, str] = {}   # local alias -> module it names
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module.split(".")[0] not in PACKAGES or node.module == me:
                    continue
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno} "
                                     f"{node.module}.{alias.name}")
                    if _is_module(f"{node.module}.{alias.name}"):
                        modules[alias.asname or alias.name] = f"{node.module}.{alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] in PACKAGES and alias.asname:
                        modules[alias.asname] = alias.name
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in modules and node.attr.startswith("_")
                    and not node.attr.startswith("__") and modules[node.value.id] != me):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} "
                             f"{modules[node.value.id]}.{node.attr}")
    return found


def test_no_private_name_crosses_a_module() -> None:
    """Nothing in edge/, server/ or protocol/ uses another module's _private names."""
    files = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")
             if "migrations" not in p.parts]
    assert private_imports(files) == []


def test_private_name_check_can_fail(tmp_path: Path) -> None:
    """The check above finds both forms it looks for (so it is not vacuous)."""
    bad = ROOT / "edge" / "_layers_probe_tmp.py"
    bad.write_text("from edge.config import _x\nfrom edge.vision import detector\n"
                   "y = detector._private\n")
    try:
        found = private_imports([bad])
    finally:
        bad.unlink()
    assert len(found) == 2, found


def test_import_layers_hold() -> None:
    """import-linter's contracts in pyproject.toml: protocol below both sides, the sides apart,
    each side's layers in order, and no circle between sibling modules."""
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert exe, "lint-imports (import-linter, a test extra) is not installed"
    proc = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
