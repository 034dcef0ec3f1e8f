"""anpyc_core is pure PyTorch: it must never import ray, mlflow or optuna."""

import ast
import pathlib
import subprocess
import sys

import anpyc_core

FORBIDDEN = {"ray", "mlflow", "optuna", "sweeper", "pyarrow", "pandas"}
ROOT = pathlib.Path(anpyc_core.__file__).parent


def test_no_forbidden_import_statements():
    offenders = []
    for path in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert offenders == []


def test_importing_everything_loads_none_of_them():
    modules = [
        "anpyc_core." + str(p.relative_to(ROOT).with_suffix("")).replace("/", ".")
        for p in ROOT.rglob("*.py")
        if p.name != "__init__.py"
    ]
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in modules)
        + f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})\n"
        + "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_the_slurm_commands_never_load_ray_or_mlflow():
    """`slurm submit/status/cancel` run on a login node: sweeper.slurm imports neither Ray nor MLflow."""
    code = (
        "import sys\nimport sweeper.slurm.cluster, sweeper.slurm.script\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'mlflow', 'optuna'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_the_lookups_never_load_ray_or_torch():
    """`status`, `best` and `rerun --dry-run` answer fast: their modules import MLflow, never Ray or torch."""
    code = (
        "import sys\nimport sweeper.cli, sweeper.query, sweeper.mlflow_store\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'torch'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
