import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bin"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import pytest  # noqa: E402


class SavedFigures(dict):
    """{absolute path of the PNG: the matplotlib Figure saved there}."""

    @staticmethod
    def _key(path):
        return os.path.abspath(os.fspath(path))

    def __setitem__(self, path, figure):
        super().__setitem__(self._key(path), figure)

    def __getitem__(self, path):
        return super().__getitem__(self._key(path))

    def __contains__(self, path):
        return super().__contains__(self._key(path))


@pytest.fixture
def saved_figures(monkeypatch):
    """Every matplotlib figure saved during the test, by the path it was written to, so that a
    test can check what a picture shows (panels, curves, titles, images) rather than only that
    a PNG exists.  Figure.savefig is wrapped: the real one writes the file, then the figure is
    kept (plt.close afterwards unregisters it from pyplot but leaves its artists intact)."""
    from matplotlib.figure import Figure

    saved = SavedFigures()
    real_savefig = Figure.savefig

    def savefig(figure, fname, *args, **kwargs):
        result = real_savefig(figure, fname, *args, **kwargs)
        saved[fname] = figure
        return result

    monkeypatch.setattr(Figure, "savefig", savefig)
    return saved
