"""The shape of lib/ that docs/architecture.md describes: no import cycles, every module
documented, no module over about 400 lines and no function over about 60."""

import ast
import os
import re

from absl.testing import absltest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIB = os.path.join(ROOT, "lib")
MAX_MODULE_LINES = 410  # "about 400" (docs/architecture.md, "Size limits")
MAX_FUNCTION_LINES = 62  # "about 60", docstring included


def _modules() -> dict[str, ast.Module]:
    found = {}
    for name in sorted(os.listdir(LIB)):
        if name.endswith(".py") and name != "__init__.py":
            with open(os.path.join(LIB, name)) as f:
                found[name[:-3]] = ast.parse(f.read())
    return found


def _lib_imports(tree: ast.Module) -> set[str]:
    """The lib modules a module imports (``from lib import x``, ``from lib.x import y``)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "lib":
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lib."):
            out.add(node.module.split(".")[1])
    return out


class ArchitectureTest(absltest.TestCase):
    def test_the_imports_have_no_cycle(self):
        graph = {name: _lib_imports(tree) for name, tree in _modules().items()}
        done, visiting = set(), []

        def visit(name):
            if name in visiting:
                self.fail(f"import cycle: {' -> '.join(visiting[visiting.index(name) :] + [name])}")
            if name in done:
                return
            visiting.append(name)
            for dep in graph.get(name, ()):
                visit(dep)
            visiting.pop()
            done.add(name)

        for name in graph:
            visit(name)

    def test_every_module_is_in_the_architecture_document(self):
        with open(os.path.join(ROOT, "docs", "architecture.md")) as f:
            doc = f.read()
        listed = set(re.findall(r"`(\w+)\.py`", doc))
        self.assertEqual(sorted(set(_modules()) - listed), [])

    def test_modules_and_functions_are_short(self):
        for name, tree in _modules().items():
            lines = max(getattr(node, "end_lineno", 0) or 0 for node in ast.walk(tree))
            self.assertLessEqual(lines, MAX_MODULE_LINES, f"lib/{name}.py: split it")
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    length = node.end_lineno - node.lineno + 1
                    self.assertLessEqual(length, MAX_FUNCTION_LINES, f"lib/{name}.py:{node.name}")


if __name__ == "__main__":
    absltest.main()
