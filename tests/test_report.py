"""`noderun report --group-by`: runs aggregated over one or several keys (mean ± sample std)."""

import json

import pytest

from noderun.report import report_command


def fake_run(directory, overrides: dict, summary: dict):
    (directory / ".hydra").mkdir(parents=True)
    (directory / ".hydra" / "overrides.yaml").write_text("".join(f"- {k}={v}\n" for k, v in overrides.items()))
    (directory / "summary.json").write_text(json.dumps(summary))


@pytest.fixture
def sweep(tmp_path):
    values = {("a", 30): [1.0, 2.0, 3.0], ("a", 50): [4.0, 4.0, 4.0], ("b", 30): [10.0, 20.0, 30.0]}
    job = 0
    for (experiment, n_obs), rmses in values.items():
        for seed, rmse in enumerate(rmses):
            interp = None if n_obs == 50 else rmse / 10  # a metric only some groups have
            fake_run(
                tmp_path / str(job),
                {"experiment": experiment, "dataset.n_obs": n_obs, "seed": seed},
                {"status": "completed", "test_rmse_extrap": rmse, "test_rmse_interp": interp},
            )
            job += 1
    return tmp_path


def grouped_lines(sweep, keys):
    assert report_command(str(sweep), keys, "status,test_rmse_extrap,test_rmse_interp") == 0
    markdown = sorted(sweep.glob("report*.md"), key=lambda p: p.stat().st_mtime)[-1].read_text()
    return markdown.splitlines()


def test_group_by_two_keys_gives_mean_and_std_per_combination(sweep):
    lines = grouped_lines(sweep, "experiment,dataset.n_obs")
    assert lines[0] == "| experiment | dataset.n_obs | runs | status | test_rmse_extrap | test_rmse_interp |"
    assert lines[2:] == [
        "| a | 30 | 3 | 3 completed | 2 ± 1 | 0.2 ± 0.1 |",
        "| a | 50 | 3 | 3 completed | 4 ± 0 |  |",
        "| b | 30 | 3 | 3 completed | 20 ± 10 | 2 ± 1 |",
    ]


def test_group_by_one_key_pools_the_others(sweep):
    lines = grouped_lines(sweep, "experiment")
    assert (
        lines[2] == "| a | 6 | 6 completed | 3 ± 1.26 | 1 0.1, 1 0.2, 1 0.3, 3 None |"
    )  # 1, 2, 3, 4, 4, 4: mean 3, sample std sqrt(8 / 5)


def test_plot_places_each_configuration_at_its_seeds_mean_with_their_std(sweep):
    from noderun.report import load_runs
    from noderun.report_plot import points

    series = points(load_runs(sweep), "test_rmse_interp", "test_rmse_extrap", "experiment")
    assert set(series) == {"a", "b"}  # a at n_obs 50 has no x value: left out
    assert series["a"] == [pytest.approx((0.2, 0.1, 2.0, 1.0))] and series["b"] == [
        pytest.approx((2.0, 1.0, 20.0, 10.0))
    ]


def test_report_plot_writes_a_figure_beside_the_tables(sweep, capsys):
    assert report_command(str(sweep), plot=["test_rmse_interp", "test_rmse_extrap"], hue="experiment") == 0
    figure = sweep / "plot_test_rmse_extrap_vs_test_rmse_interp_by_experiment.png"
    assert figure.stat().st_size > 10_000 and f"wrote {figure}" in capsys.readouterr().out


def test_report_plot_of_a_missing_metric_names_the_numeric_ones(sweep, capsys):
    assert report_command(str(sweep), plot=["nfe", "test_rmse_extrap"]) == 2
    assert (
        "no run has numbers for both 'nfe' and 'test_rmse_extrap'; numeric summary keys: test_rmse_extrap, "
        "test_rmse_interp" in capsys.readouterr().err
    )


def test_plot_takes_a_swept_config_key_as_an_axis(tmp_path):
    from noderun.report import load_runs
    from noderun.report_plot import points

    for job, (weight, seed, nfe) in enumerate([(0, 0, 20), (0, 1, 22), (0.01, 0, 14), (0.01, 1, 14)]):
        fake_run(tmp_path / str(job), {"regularizer.kinetic": weight, "seed": seed}, {"nfe_forward": nfe})
    series = points(load_runs(tmp_path), "regularizer.kinetic", "nfe_forward", None)
    assert series == {"nfe_forward": [(0.0, 0.0, 21.0, pytest.approx(2**0.5)), (0.01, 0.0, 14.0, 0.0)]}


def test_groups_follow_the_sweeps_job_numbers(tmp_path):
    """Jobs 0-1 run experiment a, 2-9 c, 10-11 b: the groups come in that order, not in the folders' text order
    (0, 1, 10, 11, 2, ...), which would put b before c."""
    for job in range(12):
        experiment = "a" if job < 2 else "c" if job < 10 else "b"
        fake_run(tmp_path / str(job), {"experiment": experiment, "seed": job}, {"status": "completed", "loss": job})
    lines = grouped_lines(tmp_path, "experiment")
    assert [line.split(" | ")[0] for line in lines[2:]] == ["| a", "| c", "| b"]
