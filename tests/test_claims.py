"""The verdicts of benchmarks/claim_measures.py on hand-written results: the robustness claim
(rows ordered at every radius, white-box and black-box) and the interpolation-path claim."""
import dataclasses
import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))

import claim_measures  # noqa: E402
from rows import run_path  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Experiment:  # the fields of claims.Experiment that claim_measures reads
    dataset: str
    rows: tuple
    seeds: tuple = ("1", "2")
    common: tuple = ()
    tag: str = ""

    def matrix_args(self):
        return [f"--datasets={self.dataset}"]


def write_result(docs_dir, measure, row, seed, white, black, clean=5.0, substitute_seed="101"):
    e = measure.experiment
    path = os.path.join(docs_dir, "benchmarks", "runs", run_path(e.dataset, row, seed, e.tag), "robustness.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    substitute = "/runs/" + run_path(e.dataset, "supervised", substitute_seed, e.tag)
    with open(path, "w") as f:
        json.dump({"attacks": {measure.attack: {
            "eps": [float(v) for v in measure.eps], "clean_error": clean, "white_box": {"error": white},
            "black_box": {"error": black, "substitute_workdir": substitute}}}}, f)


@pytest.fixture
def attacked():
    return claim_measures.Attacked(Experiment("digits", ("advmixup", "ict", "supervised")), "fgm", (1, 2), "f.png")


def test_robustness_claim_holds_only_when_the_rows_are_ordered_at_every_radius_in_both_tables(tmp_path, attacked):
    errors = {"advmixup": ([10, 20], [5, 8]), "ict": ([12, 30], [6, 9]), "supervised": ([20, 40], [7, 10])}
    for row, (white, black) in errors.items():
        for seed, shift in (("1", -1.0), ("2", 1.0)):  # the means are the numbers above
            write_result(str(tmp_path), attacked, row, seed, [v + shift for v in white], [v + shift for v in black])
    ours, table, means = attacked.summary(str(tmp_path))
    assert list(means["white_box"]["ict"]) == [12.0, 30.0] and list(means["black_box"]["supervised"]) == [7.0, 10.0]
    assert "| `ict` (2 of 2 seeds) | 5.00 ± 0.00 | 12.00 ± 1.00 | 30.00 ± 1.00 |" in table
    assert "`advmixup` 10.0/20.0" in ours
    assert attacked.below(means) == "held at every radius, white-box and black-box"

    # AdvMixup above ICT at radius 2, black-box only
    write_result(str(tmp_path), attacked, "advmixup", "1", [9, 19], [4, 9.5])
    write_result(str(tmp_path), attacked, "advmixup", "2", [11, 21], [6, 9.5])
    verdict = attacked.below(attacked.summary(str(tmp_path))[2])
    assert verdict == ("not held: white-box: advmixup < ict at 2 of 2, ict < supervised at 2 of 2; "
                       "black-box (transfer): advmixup < ict at 1 of 2, ict < supervised at 2 of 2")


def test_robustness_results_of_other_radii_or_another_substitute_do_not_count(tmp_path, attacked):
    for row in attacked.experiment.rows:
        write_result(str(tmp_path), attacked, row, "1", [1, 2], [1, 2])
        write_result(str(tmp_path), attacked, row, "2", [1, 2], [1, 2], substitute_seed="7")
    assert attacked.result(str(tmp_path), "ict", "1") is not None
    assert attacked.result(str(tmp_path), "ict", "2") is None  # attacked through another substitute
    assert attacked.summary(str(tmp_path))[2] is None  # so the claim is not measured yet
    other = dataclasses.replace(attacked, eps=(1, 3))
    assert other.result(str(tmp_path), "ict", "1") is None


def test_path_claim_counts_a_gap_under_one_point_as_a_tie_and_ignores_the_real_end():
    means = {"lambda": [0.0, 0.5, 0.9, 1.0], "real_real": [10, 60, 20, 10], "real_adversarial": [50, 65, 19.5, 9]}
    assert claim_measures.Paths.above(means) == "held at every λ < 1, ties (within 1 point) at λ 0.9 (-0.50)"
    means["real_adversarial"][1] = 58.0
    assert claim_measures.Paths.above(means) == "not held: real-adversarial below real-real at λ 0.5 (-2.00)"
