"""The names and docs a learner meets first: what `import minigrad` offers, how its modules
import one another, and the help() of Dense, SGD, fit and paper_mlp."""

import ast
import doctest
import inspect
import pathlib
import subprocess
import sys

import pytest

import minigrad as mg
from minigrad import training

PACKAGE = pathlib.Path(mg.__file__).parent
MODULES = sorted(PACKAGE.rglob("*.py"))


def run_python(code):
    """Run `code` in a fresh interpreter, so that no module is imported already."""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


# ---- imports -----------------------------------------------------------------------------------

@pytest.mark.parametrize("module", ["minigrad.autograd", "minigrad.tensor", "minigrad.ops", "minigrad.training"])
def test_each_core_module_imports_on_its_own(module):
    run_python(f"import {module}")


def test_tensor_operators_work_after_import_minigrad():
    out = run_python(
        "import minigrad\n"
        "x = minigrad.Tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)\n"
        "y = ((2 - x) * x / 2 + x ** 2 - (-x) @ x.T)[0].sum() + abs(x).mean() + x.reshape(4).max()\n"
        "y.backward()\n"
        "print((x < 2).tolist(), x.grad.shape, y.grad_fn.name)\n"
    )
    assert out.split() == ["[[True,", "False],", "[False,", "False]]", "(2,", "2)", "Add"]


def test_mg_training_is_there_after_import_minigrad_like_mg_data():
    out = run_python("import minigrad as mg\nprint(mg.training.fit.__name__, mg.data.Batches.__name__)")
    assert out.split() == ["fit", "Batches"]
    assert "training" in mg.__all__ and mg.training is training


DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _imports_outside_functions(node):
    """The import statements of a module-level statement, not looking inside def or class."""
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node
    elif not isinstance(node, DEFINITIONS):
        for child in ast.iter_child_nodes(node):
            yield from _imports_outside_functions(child)


@pytest.mark.parametrize("path", MODULES, ids=lambda path: str(path.relative_to(PACKAGE)))
def test_no_module_hides_an_import_after_its_definitions(path):
    # An import at the bottom of a file is how an import cycle gets papered over.
    body = ast.parse(path.read_text()).body
    first = next((i for i, node in enumerate(body) if isinstance(node, DEFINITIONS)), len(body))
    late = [imp.lineno for node in body[first:] for imp in _imports_outside_functions(node)]
    assert not late, f"{path.name}: module-level import(s) after the first def or class, at line(s) {late}"


def _imported_modules(path):
    """Every module that `path` imports at run time (imports under `if TYPE_CHECKING:` left out)."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            continue
        for child in ast.walk(node):
            if isinstance(child, ast.ImportFrom):
                names.add(child.module)
                names.update(f"{child.module}.{alias.name}" for alias in child.names)
            elif isinstance(child, ast.Import):
                names.update(alias.name for alias in child.names)
    return names


def test_the_engine_is_layered_autograd_below_tensor_below_ops():
    assert "minigrad.tensor" not in _imported_modules(PACKAGE / "autograd.py")
    assert "minigrad.ops" not in _imported_modules(PACKAGE / "tensor.py")


# ---- the engine a lesson builds on ------------------------------------------------------------

def test_function_and_topological_order_are_exported():
    assert mg.Function is mg.autograd.Function
    assert mg.topological_order is mg.autograd.topological_order
    assert {"Function", "topological_order"} <= set(mg.__all__)
    assert "root" in mg.topological_order.__doc__ and "inputs first" in mg.topological_order.__doc__


# ---- help(): every argument documented, and the examples run ----------------------------------

DOCUMENTED = {
    "Dense": (mg.nn.Dense, mg.nn.Dense.__init__),
    "SGD": (mg.optim.SGD, mg.optim.SGD.__init__),
    "fit": (training.fit, training.fit),
    "paper_mlp": (training.paper_mlp, training.paper_mlp),
}


@pytest.mark.parametrize("name", DOCUMENTED)
def test_every_argument_is_documented(name):
    documented, signature_of = DOCUMENTED[name]
    names = [p.name for p in inspect.signature(signature_of).parameters.values()
             if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if isinstance(documented, type) and issubclass(documented, mg.nn.Module):
        names += ["dtype", "trainable"]  # Module's own, passed up through **kwargs
    docstring = inspect.getdoc(documented)
    assert docstring.splitlines()[1] == "", "a one-line summary comes first"
    missing = [arg for arg in names if f"\n    {arg}: " not in docstring]
    assert not missing, f"{name}'s docstring has no Args entry for {missing}"
    assert "Example:" in docstring and ">>> " in docstring


@pytest.mark.parametrize("name", DOCUMENTED)
def test_the_docstring_examples_run(name):
    documented, _ = DOCUMENTED[name]
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in doctest.DocTestFinder(recurse=False).find(documented, name, globs={}):
        runner.run(test)
    results = runner.summarize(verbose=False)
    assert results.attempted > 0 and results.failed == 0
