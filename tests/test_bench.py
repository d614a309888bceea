"""The benchmark runs at a tiny size and computes its columns right; it asserts no timing."""

import json

import pytest

from noderun.bench.suite import add_derived_columns, libraries, run_bench
from noderun.cli import main


def test_derived_columns():
    rows = [
        {"case": "a", "library": "noderun", "pass": "forward", "time_s": 2.0, "nfe": 10, "eval_s": 0.1},
        {"case": "a", "library": "torchdiffeq", "pass": "forward", "time_s": 4.0, "nfe": 20, "eval_s": 0.1},
        {"case": "a", "library": "noderun", "pass": "backward:adjoint", "time_s": 3.0, "nfe": 5},
        {"case": "b", "library": "noderun", "pass": "forward", "time_s": 1.0, "nfe": 4, "eval_s": 0.5},
    ]
    rows = add_derived_columns(rows)
    assert rows[0]["overhead"] == pytest.approx(2.0) and rows[1]["overhead"] == pytest.approx(2.0)
    assert rows[0]["vs_torchdiffeq"] == pytest.approx(0.5)
    assert "vs_torchdiffeq" not in rows[1] and "overhead" not in rows[2] and "vs_torchdiffeq" not in rows[2]
    assert rows[3]["overhead"] == pytest.approx(0.5) and "vs_torchdiffeq" not in rows[3]


def test_tiny_bench_measures_every_pass(tmp_path):
    rows = run_bench(["mlp", "van_der_pol"], repeats=1, tiny=True, out=tmp_path)
    ours = {(row["case"], row["pass"]): row for row in rows if row["library"] == "noderun"}
    assert set(ours) == {
        ("mlp", "forward"),
        ("mlp", "forward:compiled"),
        ("mlp", "backward:backprop"),
        ("mlp", "backward:adjoint"),
        ("mlp", "backward:adjoint_seminorm"),
        ("mlp", "backward:checkpoint"),
        ("van_der_pol", "forward"),
        ("van_der_pol", "forward:per_sample"),
    }
    forward_passes = [
        ("mlp", "forward"),
        ("mlp", "forward:compiled"),
        ("van_der_pol", "forward"),
        ("van_der_pol", "forward:per_sample"),
    ]
    for case, forward_pass in forward_passes:
        forward = ours[(case, forward_pass)]
        assert forward["nfe"] > 0 and forward["time_s"] > 0 and forward["error"] < 1e-3 and forward["overhead"] > 0
        assert forward["steps"] > 0 and forward["eval_s"] > 0
    compiled, eager = ours[("mlp", "forward:compiled")], ours[("mlp", "forward")]
    assert (compiled["nfe"], compiled["steps"]) == (eager["nfe"], eager["steps"])
    assert compiled["compile_s"] > compiled["time_s"] and "compile_s" not in eager
    assert ours[("van_der_pol", "forward:per_sample")]["steps"] < ours[("van_der_pol", "forward")]["steps"]
    assert ours[("mlp", "backward:backprop")]["nfe"] == 0 < ours[("mlp", "backward:adjoint")]["nfe"]
    assert (
        ours[("mlp", "backward:adjoint")]["saved_mb"]
        < ours[("mlp", "backward:checkpoint")]["saved_mb"]
        < ours[("mlp", "backward:backprop")]["saved_mb"]
    )
    assert ours[("mlp", "backward:adjoint_seminorm")]["nfe"] <= ours[("mlp", "backward:adjoint")]["nfe"]
    assert {row["library"] for row in rows} == set(libraries())
    written = json.loads((tmp_path / "bench.json").read_text())
    assert len(written["rows"]) == len(rows) and (tmp_path / "bench.csv").read_text().startswith("case,library,pass")


def test_tiny_bench_heterogeneous_batch_and_latent_adjoint():
    rows = run_bench(["mixed_scales", "mixed_rows", "latent_ode"], repeats=1, tiny=True)
    ours = {(row["case"], row["pass"]): row for row in rows if row["library"] == "noderun"}
    assert {"forward", "forward:per_sample"} <= {p for c, p in ours if c == "mixed_scales"}
    assert {"backward:backprop", "backward:adjoint", "backward:checkpoint"} <= {p for c, p in ours if c == "latent_ode"}
    # the median sample of a batch spread over two decades of time scales needs fewer steps than the batch
    assert ours[("mixed_scales", "forward:per_sample")]["steps"] < ours[("mixed_scales", "forward")]["steps"]
    # dropping finished samples changes no sample's steps; its solution only by float32 rounding (a matrix
    # product over fewer rows may round differently)
    compact, per_sample = ours[("mixed_rows", "forward:per_sample_compact")], ours[("mixed_rows", "forward:per_sample")]
    assert (compact["steps"], compact["nfe"]) == (per_sample["steps"], per_sample["nfe"])
    assert compact["error"] == pytest.approx(per_sample["error"], abs=1e-5)
    forward = ours[("latent_ode", "forward")]
    assert ours[("latent_ode", "backward:checkpoint")]["nfe"] <= forward["nfe"] + forward["steps"]
    # the adjoint jumps at each of the 100 output times without a new start: fewer evaluations than the 8 a
    # restart costs an interval at the least (the first derivative, the first-step estimate, six stages)
    assert 0 < ours[("latent_ode", "backward:adjoint")]["nfe"] < 8 * 99


def test_bench_command_and_unknown_case(tmp_path, capsys):
    assert main(["bench", "--tiny", "--repeats", "1", "--cases", "cnf", "--out", str(tmp_path)]) == 0
    assert "noderun bench" in capsys.readouterr().out and (tmp_path / "bench.csv").exists()
    with pytest.raises(ValueError, match="valid: mlp"):
        run_bench(["mnist"], tiny=True)


def test_tiny_stiff_cases_compare_the_implicit_methods_with_scipy():
    rows = run_bench(["stiff_van_der_pol", "robertson"], repeats=1, tiny=True)
    for case in ("stiff_van_der_pol", "robertson"):
        by_pass = {row["pass"]: row for row in rows if row["case"] == case}
        assert set(by_pass) == {
            "forward:kvaerno3",
            "forward:kvaerno4",
            "forward:kvaerno5",
            "forward:radau5",
            "forward:dopri5",
            "forward:Radau",
            "forward:BDF",
        }
        for method in ("kvaerno3", "kvaerno4", "kvaerno5", "radau5"):
            row = by_pass[f"forward:{method}"]
            assert row["library"] == "noderun" and row["time_s"] > 0 and row["error"] < 1e-4
            assert 0 < row["jacobians"] <= row["steps"] + row["rejected"] and row["nfe"] > row["steps"]
        assert by_pass["forward:Radau"]["library"] == "scipy" and by_pass["forward:Radau"]["jacobians"] > 0
        assert by_pass["forward:dopri5"]["jacobians"] == 0
