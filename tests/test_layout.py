"""The shape of the repository: families import side by side, nothing happens at import, the
runtime dependencies are numpy, torch and torchvision only."""

import ast
import importlib
import sys

from conftest import ROOT

FAMILIES = ("AE", "VAE", "GAN")


def test_families_import_side_by_side_without_clashes():
    modules = {family: importlib.import_module(f"{family}.model") for family in FAMILIES}
    assert len({module.__file__ for module in modules.values()}) == len(FAMILIES)
    assert hasattr(modules["VAE"], "VAE") and hasattr(modules["AE"], "LinearAE")
    importlib.import_module("GAN")


def test_importing_a_script_parses_nothing_and_writes_nothing(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "argv", ["pytest", "--no-such-flag"])  # argparse would exit on this
    monkeypatch.chdir(tmp_path)
    for family in FAMILIES:
        for script in ("train", "sample"):
            importlib.reload(importlib.import_module(f"{family}.{script}"))
    assert list(tmp_path.iterdir()) == []


def test_runtime_code_imports_only_numpy_torch_torchvision_and_pillow():
    allowed = {"numpy", "torch", "torchvision", "PIL", "common", *FAMILIES} | set(
        sys.stdlib_module_names
    )
    for folder in ("common", *FAMILIES):
        for path in (ROOT / folder).glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = (
                    [alias.name for alias in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module]
                    if isinstance(node, ast.ImportFrom) and node.level == 0
                    else []
                )
                assert all(name.split(".")[0] in allowed for name in names), (path, names)
    requirements = (ROOT / "requirements.txt").read_text().split()
    assert sorted(requirements) == ["numpy", "torch", "torchvision"]


def scripts():
    """The family files a user runs (they end in `if __name__ == "__main__"`), by module name."""
    return {
        f"{path.parent.name}.{path.stem}": path
        for family in FAMILIES
        for path in (ROOT / family).glob("*.py")
        if 'if __name__ == "__main__":' in path.read_text()
    }


def test_no_script_imports_another_script():
    # What two scripts share lives in the family's model.py (or GAN/evaluate.py), so each script
    # reads alone.
    runnable = scripts()
    assert {
        "AE.train",
        "AE.sample",
        "VAE.train",
        "VAE.evaluate",
        "GAN.train",
        "GAN.sample",
        "GAN.fid",
    } <= set(runnable)
    for name, path in runnable.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported = {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
                assert not imported & set(runnable), (name, imported & set(runnable))
            if isinstance(node, ast.Import):
                assert not {alias.name for alias in node.names} & set(runnable), name
