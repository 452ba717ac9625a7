"""BUILD stays in step with the tree: every module, binary and test has its target.

Bazel cannot fetch its rules offline here, so this test reads BUILD as text."""
import glob
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build_text():
    with open(os.path.join(ROOT, "BUILD")) as f:
        return f.read()


def quoted_paths(text):
    return set(re.findall(r'"([\w/.-]+\.py)"', text))


def test_every_module_binary_and_test_has_a_target():
    text = build_text()
    listed = quoted_paths(text)
    modules = {os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "tf_advssl", "**", "*.py"),
                                                              recursive=True)}
    binaries = {os.path.relpath(p, ROOT) for folder in ("bin", "examples")
                for p in glob.glob(os.path.join(ROOT, folder, "*.py"))}
    tests = {os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "tests", "test_*.py"))}
    assert modules <= listed, f"modules without a BUILD entry: {sorted(modules - listed)}"
    for path in binaries:
        name = os.path.splitext(os.path.basename(path))[0]
        assert re.search(r'py_binary\(\s*name = "%s",\s*srcs = \["%s"\]' % (name, path), text), path
    for path in tests:
        name = os.path.splitext(os.path.basename(path))[0]
        assert re.search(r'py_test\(\s*name = "%s",\s*srcs = \["%s"\]' % (name, path), text), path
    missing = {p for p in listed if not os.path.exists(os.path.join(ROOT, p))}
    assert not missing, f"BUILD lists files that do not exist: {sorted(missing)}"
