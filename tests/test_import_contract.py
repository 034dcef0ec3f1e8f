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
        "import sys\nimport sweeper.cli, sweeper.reading.query, sweeper.tracking.mlflow_store\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'torch'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def _module_graph(packages: list[str]) -> dict[str, set[str]]:
    """module → the project modules it imports (any statement, at any depth, lazy ones included)."""
    base = ROOT.parent
    files = {}
    for package in packages:
        for path in (base / package).rglob("*.py"):
            parts = list(path.relative_to(base).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            files[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in files.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name in files}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    anchor = name.split(".") if is_package else name.split(".")[:-1]
                    anchor = anchor[: len(anchor) - node.level + 1]
                    module = ".".join(anchor + ([node.module] if node.module else []))
                else:
                    module = node.module
                for alias in node.names:
                    child = f"{module}.{alias.name}"
                    targets |= {child} if child in files else ({module} if module in files else set())
        graph[name] = targets - {name}
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_circle_finder_finds_a_circle():
    """The check below would see a circle: a → b → c → a is one component, d stands alone."""
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circles_in_the_whole_tree():
    """No module imports, directly or through others, a module that imports it back (lazy imports count)."""
    assert _circles(_module_graph(["anpyc_core", "sweeper", "bench"])) == []


#: the sweeper's floors: a package may import its own floor's modules and those of lower floors only
FLOORS = {"storage": 0, "study": 1, "tracking": 2, "running": 3, "reading": 3, "cli": 4}


def test_the_sweeper_floors_import_downwards_only():
    """storage → study → tracking → running / reading → cli, arrows one way; running and reading never meet."""
    graph = _module_graph(["sweeper"])
    climbs = []
    for module, targets in graph.items():
        here = module.split(".")[1] if module.count(".") else None
        for target in targets:
            there = target.split(".")[1] if target.count(".") else None
            if here in FLOORS and there in FLOORS and here != there and FLOORS[there] >= FLOORS[here]:
                climbs.append(f"{module} -> {target}")
    assert climbs == []


def test_reading_never_loads_ray_and_results_never_load_running():
    """Every module of sweeper.reading imports without Ray; sweeper.storage and sweeper.tracking without
    sweeper.running (checked on what a fresh interpreter actually loads, not only on import statements)."""
    base = ROOT.parent / "sweeper"
    reading = [f"sweeper.reading.{p.stem}" for p in (base / "reading").glob("*.py") if p.stem != "__init__"]
    results = [f"sweeper.{d}.{p.stem}" for d in ("storage", "tracking") for p in (base / d).glob("*.py")
               if p.stem != "__init__"]
    code = (
        "import sys\n" + "".join(f"import {m}\n" for m in reading)
        + "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] == 'ray')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
    code = (
        "import sys\n" + "".join(f"import {m}\n" for m in results)
        + "print(','.join(sorted(m for m in sys.modules if m.startswith(('sweeper.running', 'sweeper.reading')))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_studies_launched_before_the_move_still_unpickle():
    """Tune pickled `sweeper.trainable.train_trial` and `sweeper.tracking.StudyRecorder` into older studies'
    state: those names load the same objects as their new homes."""
    import pickle

    from sweeper.running.trainable import train_trial
    from sweeper.tracking.recorder import StudyRecorder

    assert pickle.loads(b"csweeper.trainable\ntrain_trial\np0\n.") is train_trial
    assert pickle.loads(b"csweeper.tracking\nStudyRecorder\np0\n.") is StudyRecorder
