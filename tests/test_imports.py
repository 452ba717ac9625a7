"""The package's imports run one way: no module imports, at any level of its code, a module
that imports it back (directly or through others); plotting and config are leaves."""
import ast
import glob
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "tf_advssl"


def module_name(path):
    rel = os.path.relpath(path, ROOT)[:-len(".py")].replace(os.sep, ".")
    return rel[:-len(".__init__")] if rel.endswith(".__init__") else rel


def modules():
    return {module_name(p): p for p in glob.glob(os.path.join(ROOT, PACKAGE, "**", "*.py"), recursive=True)}


def imports_of(path, known):
    """The package modules ``path`` imports anywhere in its code (functions included)."""
    found = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in known else node.module
                     for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:  # import a.b.c of a module a.b: its longest known prefix
                name = name.rpartition(".")[0]
            if name.startswith(PACKAGE + "."):
                found.add(name)
    return found


def import_graph():
    known = modules()
    return {name: imports_of(path, known) - {name} for name, path in known.items()}


def find_cycle(graph):
    """One import cycle as a list of modules [a, b, ..., a], or None."""
    state = {}

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for child in sorted(graph.get(node, ())):
            if state.get(child) == "open":
                return stack[stack.index(child):] + [child]
            if child not in state:
                cycle = visit(child, stack)
                if cycle:
                    return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node, [])
            if cycle:
                return cycle
    return None


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_plotting_and_config_are_leaves():
    graph = import_graph()
    assert graph["tf_advssl.plotting"] == set()  # it draws what it is given
    assert graph["tf_advssl.config"] == set()



def test_no_module_over_400_lines():
    long = {name: n for name, path in modules().items() if (n := sum(1 for _ in open(path))) > 400}
    assert not long, f"modules over 400 lines (split them by idea): {long}"
