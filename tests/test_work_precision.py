"""Work-precision diagrams: the rows, the CSV's columns and the figure of a small sweep."""

import csv

import pytest

from noderun.bench.precision import COLUMNS, STEP_COUNTS, load_problem, reference, work_precision
from noderun.cli import main


@pytest.fixture(scope="module")
def small_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("work_precision")
    rows = work_precision(["mlp"], repeats=1, tiny=True, out=out, tolerances=(1e-3, 1e-6))
    return out, rows


def test_the_csv_has_a_row_per_setting_with_its_columns(small_sweep):
    out, rows = small_sweep
    with open(out / "work_precision.csv") as file:
        written = list(csv.DictReader(file))
    assert tuple(written[0]) == COLUMNS and len(written) == len(rows)
    noderun_dopri5 = [row for row in rows if row["library"] == "noderun" and row["method"] == "dopri5"]
    assert [row["tolerance"] for row in noderun_dopri5] == [1e-3, 1e-6]
    assert noderun_dopri5[1]["error"] < noderun_dopri5[0]["error"] / 10
    assert noderun_dopri5[1]["nfe"] > noderun_dopri5[0]["nfe"] > 0
    rk4 = [row for row in rows if row["library"] == "noderun" and row["method"] == "rk4"]
    assert [row["steps_fixed"] for row in rk4] == list(STEP_COUNTS)
    assert rk4[-1]["error"] < rk4[0]["error"] / 1e4  # fourth order: 100 times the steps


def test_each_problem_gets_its_figure(small_sweep):
    out, _ = small_sweep
    assert (out / "mlp.png").stat().st_size > 20_000


def test_the_stiff_references_keep_the_case_tolerance_ratio():
    problem = load_problem("robertson", tiny=True)
    assert problem.stiff and problem.atol_ratio == pytest.approx(1e-4)
    assert reference(problem).shape == (2, 3)


def test_a_problem_solved_backwards_in_time_takes_positive_fixed_steps():
    from noderun.bench.precision import PrecisionTrial

    problem = load_problem("cnf", tiny=True)  # from t = 10 to 0
    row = PrecisionTrial(problem, "noderun", "rk4", None, 100, reference(problem)).row()
    assert "note" not in row and row["nfe"] == 400 and row["error"] < 1e-3


def test_an_unknown_problem_is_refused_with_the_valid_ones(capsys):
    with pytest.raises(ValueError, match="valid: mlp, van_der_pol"):
        load_problem("lorenz", tiny=True)


def test_the_command_writes_the_csv_and_figures(tmp_path, capsys):
    assert (
        main(
            [
                "bench",
                "--work-precision",
                "--tiny",
                "--repeats",
                "1",
                "--cases",
                "stiff_van_der_pol",
                "--tolerances",
                "1e-3,1e-5",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    assert (tmp_path / "stiff_van_der_pol.png").exists()
    assert f"wrote {tmp_path}/work_precision.csv" in capsys.readouterr().out


def test_noderun_rows_are_solved_by_noderun_without_torchdiffeq(monkeypatch):
    import sys

    from noderun.bench.precision import PrecisionTrial

    monkeypatch.setitem(sys.modules, "torchdiffeq", None)  # importing it now fails
    problem = load_problem("mlp", tiny=True)
    exact = reference(problem)
    for tolerance, steps, method in [(None, 10, "rk4"), (1e-4, None, "dopri5")]:
        row = PrecisionTrial(problem, "noderun", method, tolerance, steps, exact).row()
        assert row["error"] < 1 and row["nfe"] > 0 and "note" not in row
