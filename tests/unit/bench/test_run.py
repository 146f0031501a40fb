"""The benchmark's own arithmetic (the runs themselves are `make bench`, not tests)."""

from bench.run import median_result


def test_median_of_runs_takes_each_figure_and_summary_percentile_apart():
    runs = [
        {
            "ok": 100,
            "errors": 0,
            "cpu": 0.30,
            "latency": {"p50": 1.0, "p99": 9.0},
            "samples": ["a"],
        },
        {"ok": 98, "errors": 2, "cpu": 0.10, "latency": {"p50": 3.0, "p99": 4.0}, "samples": []},
        {"ok": 99, "errors": 1, "cpu": 0.20, "latency": {"p50": 2.0, "p99": 5.0}, "samples": []},
    ]
    merged = median_result(runs)
    assert merged["ok"] == 99 and merged["errors"] == 1 and merged["cpu"] == 0.20
    assert merged["latency"] == {"p50": 2.0, "p99": 5.0}  # not the p99 of the run with p50 2
    assert merged["samples"] == ["a"]  # not a figure: the first run's


def test_a_run_without_a_summary_keeps_the_first_value():
    merged = median_result([{"ttft": None, "rps": 10.0}, {"ttft": {"p50": 1.0}, "rps": 30.0}])
    assert merged == {"ttft": None, "rps": 20.0}


def test_memory_per_stream_is_the_largest_run_not_the_median():
    runs = [{"rss_per_stream": 60_000.0}, {"rss_per_stream": 9_000.0}, {"rss_per_stream": 8_000.0}]
    assert median_result(runs)["rss_per_stream"] == 60_000.0
