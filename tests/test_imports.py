"""The package's imports run one way: no module imports, at any level of its code, a module
that imports it back (directly or through others); plotting and config are leaves, and the
methods' hyper-parameters (tf_advssl.hparams) stand on config alone, without TensorFlow."""
import ast
import glob
import os
import subprocess
import sys

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


def test_hyperparameters_sit_on_config_only():
    graph = import_graph()
    hparams = [name for name in graph if name.startswith("tf_advssl.hparams")]
    assert len(hparams) > 10
    for name in hparams:
        others = {m for m in graph[name] if not m.startswith("tf_advssl.hparams")}
        assert others <= {"tf_advssl.config"}, (name, others)


def test_help_and_every_method_params_load_no_tensorflow():
    """``bin/train.py --help`` and the Params of every method (the flags and their checks)
    are plain Python: loading TensorFlow takes longer than all the rest."""
    script = ("import io, runpy, sys, contextlib\n"
              "from tf_advssl import hparams\n"
              "[hparams.get_params(name)() for name in hparams.PARAMS if name != 'scar']\n"
              "train_py = sys.argv[1]\n"
              "sys.argv = ['train.py', '--help']\n"
              "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
              "    try:\n"
              "        runpy.run_path(train_py, run_name='__main__')\n"
              "    except SystemExit:\n"
              "        pass\n"
              "assert 'method vat flags:' in out.getvalue()\n"
              "print(sorted(m for m in ('tensorflow', 'keras', 'numpy') if m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", script, os.path.join(ROOT, "bin", "train.py")],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"



def test_no_module_over_400_lines():
    long = {name: n for name, path in modules().items() if (n := sum(1 for _ in open(path))) > 400}
    assert not long, f"modules over 400 lines (split them by idea): {long}"
