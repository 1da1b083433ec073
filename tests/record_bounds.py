"""Records the values of the suite's numeric assertions as they pass, for the table of bounds in docs/tests.md.

Not part of any ordinary run (nor of CI): loaded by name, for one run of the whole suite,

    rm -f tests/__pycache__/*-pytest-*.pyc     # pytest rewrites asserts for the pass hook only when it rewrites
    LAB_RECORD_BOUNDS=bounds.jsonl python -m pytest -q -p tests.record_bounds -o enable_assertion_pass_hook=true
    rm -f tests/__pycache__/*-pytest-*.pyc     # back to asserts rewritten without it
    python tests/bounds.py write bounds.jsonl.*

Each process appends to its own file (bounds.jsonl.gw0, ...), one JSON line a value:
- for a comparison (<, <=, >, >=, == a float) in a passing numeric assertion (tests/bounds.py finds them), its two
  numbers, each operand evaluated again in the assertion's frame (comprehensions rebuilt as lists, so that
  `all(a >= 65 for a in ours)` gives each a); operands that call anything but plain arithmetic and reading
  functions are not evaluated again (they might talk to a server or train);
- for pytest.approx, torch/np.allclose, math/np/torch.isclose: the largest difference over its tolerance.
"""

import ast
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from _pytest.approx import ApproxScalar  # pytest 9 (before: _pytest.python_api)

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bounds  # noqa: E402  (tests/ is not a package)

TESTS = Path(__file__).resolve().parent
# calls whose operands are read again: arithmetic and reading, nothing that writes, trains or asks a server
PURE = {"float", "int", "abs", "len", "sum", "min", "max", "sorted", "round", "zip", "enumerate", "range", "list",
        "tuple", "mean", "item", "rstrip", "replace", "tolist", "norm", "detach", "corrcoef", "getcolors",
        "unique", "corr", "gradient_gap", "losses", "trained_test_acc", "time_left", "monotonic", "preprocess",
        "fromarray", "load_image", "pieces_of", "numpy", "double", "float", "stack", "as_tensor"}
_out = None
_asserts = {}


def out():
    global _out
    if _out is None:
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        _out = open(f"{os.environ.get('LAB_RECORD_BOUNDS', 'bounds.jsonl')}.{worker}", "a", encoding="utf-8")
    return _out


def emit(record):
    out().write(json.dumps(record) + "\n")
    out().flush()


def caller():
    """The innermost frame running a test file's code: (its file's name, its line, the frame)."""
    frame = sys._getframe(2)
    while frame is not None:
        path = Path(frame.f_code.co_filename)
        if path.parent == TESTS and path.name != "record_bounds.py" and path.name != "bounds.py":
            return path.name, frame.f_lineno, frame
        frame = frame.f_back
    return None, None, None


def asserts_of(name):
    """{line: the assert's test node} of a test file's numeric assertions."""
    if name not in _asserts:
        tree = ast.parse((TESTS / name).read_text(encoding="utf-8"))
        _asserts[name] = {n.lineno: n.test for n in ast.walk(tree) if isinstance(n, ast.Assert)
                          and bounds.is_numeric(n.test)}
    return _asserts[name]


def safe(node):
    for n in ast.walk(node):
        if isinstance(n, ast.Call) and bounds.call_name(n) not in PURE:
            return False
        if isinstance(n, (ast.Lambda, ast.NamedExpr, ast.Await, ast.Yield)):
            return False
    return True


def comprehensions_around(test, target):
    """The comprehensions of `test` that enclose `target`, outermost first."""
    chain = []

    def walk(node, around):
        if node is target:
            chain.extend(around)
            return True
        inner = around + [node] if isinstance(node, (ast.GeneratorExp, ast.ListComp, ast.SetComp)) else around
        return any(walk(child, inner) for child in ast.iter_child_nodes(node))

    walk(test, [])
    return chain


def pairs(test, compare, namespace):
    """[(which pair, left, op, right)] of one comparison, the bound on the right, for every element of the
    comprehensions around it."""
    operands = [compare.left, *compare.comparators]
    tuple_ = ast.Tuple(elts=operands, ctx=ast.Load())
    generators = [g for comp in comprehensions_around(test, compare) for g in comp.generators]
    expression = ast.ListComp(elt=tuple_, generators=generators) if generators else ast.List(elts=[tuple_],
                                                                                             ctx=ast.Load())
    tree = ast.fix_missing_locations(ast.Expression(body=expression))
    rows = eval(compile(tree, "<bound>", "eval"), namespace)
    symbols = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "=="}
    found = []
    for values in rows:
        for i, op in enumerate(compare.ops):
            if type(op) not in symbols:
                continue
            a, b = operands[i], operands[i + 1]
            if isinstance(a, ast.Constant) and isinstance(b, ast.Constant):
                continue  # two constants (0.02 < 0.1 in a chain): no value
            left, right = values[i], values[i + 1]
            if isinstance(left, bool) or isinstance(right, bool):
                continue
            try:
                left, right = float(left), float(right)
            except (TypeError, ValueError):
                continue
            # the bound is the constant side, else the right side (value op bound, as most are written)
            if isinstance(a, ast.Constant):
                left, right, op = right, left, {ast.Lt: ast.Gt, ast.LtE: ast.GtE, ast.Gt: ast.Lt,
                                                ast.GtE: ast.LtE, ast.Eq: ast.Eq}[type(op)]()
            found.append((i, left, symbols[type(op)], right))
    return found


def pytest_assertion_pass(item, lineno, orig, expl):
    name, _, frame = caller()
    test = asserts_of(name).get(lineno) if name else None
    if test is None:
        return
    namespace = {**frame.f_globals, **frame.f_locals}
    for i, compare in enumerate(bounds.numeric_compares(test)):
        if any(isinstance(n, ast.Call) and bounds.call_name(n) in bounds.TOLERANCES for n in ast.walk(compare)):
            continue  # a tolerance: its wrapper below records it
        if not all(safe(o) for o in [compare.left, *compare.comparators]):
            first = expl.splitlines()[0][:200]
            emit({"file": name, "line": lineno, "at": [i, 0], "kind": "unevaluated", "expl": first})
            continue
        try:
            found = pairs(test, compare, namespace)
        except Exception as e:  # an operand that cannot be read again (a generator used up): say so, go on
            emit({"file": name, "line": lineno, "at": [i, 0], "kind": "unevaluated",
                  "expl": f"{type(e).__name__}: {e}"[:200]})
            continue
        for j, left, op, right in found:
            emit({"file": name, "line": lineno, "at": [i, j], "kind": "compare", "left": left, "op": op,
                  "right": right})


def tolerance_used(what, difference, allowed, held):
    name, line, _ = caller()
    if name is None:
        return
    used = float(np.max(difference / allowed)) if np.size(difference) else 0.0
    emit({"file": name, "line": line, "kind": "tolerance", "used": used, "what": what, "held": bool(held)})


def wrap_allclose(module, original):
    def allclose(a, b, rtol=1e-05, atol=1e-08, equal_nan=False):
        result = original(a, b, rtol=rtol, atol=atol, equal_nan=equal_nan)
        x, y = (np.asarray(t.detach().double().cpu()) if torch.is_tensor(t) else np.asarray(t, float) for t in (a, b))
        tolerance_used(f"atol {atol:g}, rtol {rtol:g}", np.abs(x - y), atol + rtol * np.abs(y), result)
        return result

    setattr(module, "allclose", allclose)


def wrap_isclose():
    original = math.isclose

    def isclose(a, b, *, rel_tol=1e-09, abs_tol=0.0):
        allowed = max(rel_tol * max(abs(a), abs(b)), abs_tol)
        result = original(a, b, rel_tol=rel_tol, abs_tol=abs_tol)
        tolerance_used(f"rel {rel_tol:g}, abs {abs_tol:g}", abs(a - b), allowed if allowed else math.inf, result)
        return result

    math.isclose = isclose


def wrap_approx():
    original = ApproxScalar.__eq__

    def eq(self, actual):
        result = original(self, actual)
        try:
            difference = abs(float(actual) - float(self.expected))
            tolerance = float(self.tolerance)
            what = f"approx {number(self.expected)} ± {tolerance:.3g}"
            tolerance_used(what, difference, tolerance if tolerance else math.inf, result)
        except (TypeError, ValueError):
            pass
        return result

    ApproxScalar.__eq__ = eq


def number(x):
    return f"{x:.4g}" if isinstance(x, float) else str(x)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    wrap_allclose(torch, torch.allclose)
    wrap_allclose(np, np.allclose)
    wrap_isclose()
    wrap_approx()
