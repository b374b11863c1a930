"""Smoke tests of benchmarks/: the minicnn worker path end to end on a few hundred real MNIST
images, the model specs and their FLOP counts, the BLAS report and peak measure, the workers'
environment (--native-blas, --minicnn checkouts), the layer benchmark's minicnn columns, and the
summary / ratio / table / JSON code on fabricated per-run inputs (marked as such). No timing is
asserted; TensorFlow, PyTorch and JAX are not needed. The environment is never changed: the
tests hand the code environment dicts of their own."""

import ctypes
import importlib.util
import json
import os
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCH = REPO_ROOT / "benchmarks"


def load(name):
    """Import benchmarks/<name>.py as a module (benchmarks/ is scripts, not a package)."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench_mnist():
    return load("bench_mnist")


# ----------------------------------------------------------------------------- real worker run


def test_quick_minicnn_run_writes_table_json_and_chart(bench_mnist, mnist_dir, tmp_path, capsys,
                                                       monkeypatch):
    # Workers import minicnn from this checkout, as the README's PYTHONPATH=. command does.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p))
    # No warm-up process, to keep the test short: the one worker compiles (or loads) the kernels.
    report = bench_mnist.main(["--quick", "--frameworks", "minicnn", "--limit", "512",
                               "--no-warmup", "--predict-repeats", "2", "--peak-size", "256",
                               "--out-dir", str(tmp_path)])
    out = capsys.readouterr().out

    assert report["warmups"] == [] and "no warm-up process (cold caches)" in out
    (run,) = report["runs"]
    assert "error" not in run, run.get("error")
    r = run["result"]
    assert r["framework"] == "minicnn" and r["seed"] == 1 and r["limit"] == 512
    assert len(r["epoch_s"]) == 1 and r["epoch_s"][0] > 0
    # Start-to-first-batch spans start-up and import, and ends before the process does.
    assert 0 <= r["startup_s"] < r["first_batch_s"] < r["total_s"] <= run["wall_s"]
    assert r["import_s"] < r["first_batch_s"]
    assert r["predict_images"] == 512 and len(r["predict_s"]) == 2
    assert r["predict_images_per_s"] == pytest.approx(512 / (sum(r["predict_s"]) / 2))
    assert r["peak_rss_mb"] > 50  # NumPy + Numba + MNIST alone take more than this
    # 16 Adam steps on real digits already beat chance (10 %): ~38 % at this seed.
    assert 0.2 < r["test_accuracy"] <= 1 and 0 < r["test_loss"] < 2.3
    assert r["versions"]["minicnn"] and r["config"]["numba_threads"] >= 1
    assert run["others_cpu_cores"] is None or 0 <= run["others_cpu_cores"] < 64
    # The worker says which BLAS and kernel it ran (read after the timed part), the same as
    # the peak process that ran with the same environment.
    blas = load("_blas").blas_info()
    assert r["blas"]["kernel"] == blas["kernel"] == report["peak"]["blas"]["kernel"]
    assert r["blas"]["library"] == blas["library"]
    assert r["flops_per_image"] == 13_081_872 and r["train_images"] == 512
    assert r["minicnn_path"] == str(REPO_ROOT / "minicnn")

    stats = report["summary"]["minicnn"]["stats"]
    assert stats["epoch_first_s"]["median"] == r["epoch_s"][0]
    assert stats["epoch_rest_s"] is None  # a 1-epoch run has no later epochs
    assert stats["test_accuracy_pct"]["values"] == [100 * r["test_accuracy"]]
    # Efficiency: the model's FLOPs per image x images / seconds, over the measured peak.
    gflops = 13_081_872 * 512 / r["epoch_s"][0] / 1e9
    assert stats["train_gflops"]["median"] == pytest.approx(gflops)
    assert stats["efficiency_pct"]["median"] == pytest.approx(
        100 * gflops / max(report["peak"]["peak"]["gflops"].values()))
    # No peer ran: only minicnn's own efficiency is judged.
    assert [x["name"] for x in report["ratios"]] == [
        "efficiency: minicnn training FLOP/s over the measured peak (%)"]

    # The printed table carries the run's own figures; the JSON and PNG are on disk.
    assert f"| s/epoch, first epoch | {r['epoch_s'][0]:.2f} |" in out
    assert f"| test accuracy by seed (%) | {100 * r['test_accuracy']:.2f} |" in out
    assert "first 512 images only (NOT comparable)" in out
    assert f"kernel {blas['kernel']} (from {blas['source']})" in out
    assert "Peak: NumPy float32 matrix product 256x256" in out
    json_files = list(tmp_path.glob("*-quick.json"))
    png_files = list(tmp_path.glob("*-quick.png"))
    assert len(json_files) == 1 and len(png_files) == 1
    saved = json.loads(json_files[0].read_text())
    assert saved["schema"] == "minicnn-bench-mnist/2" and saved["fabricated"] is False
    assert saved["runs"][0]["result"]["epoch_s"] == r["epoch_s"]
    assert png_files[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*tmp"))  # no temporary file left behind


def test_failed_worker_is_recorded_not_raised(bench_mnist, tmp_path):
    args = bench_mnist.parse_args(["--quick", "--frameworks", "minicnn",
                                   "--python", "/bin/false", "--out-dir", str(tmp_path)])
    record = bench_mnist.run_worker("minicnn", 1, args)
    assert "result" not in record
    assert "exited with code 1" in record["error"]
    summary = bench_mnist.summarize([record], ["minicnn"])
    assert summary["minicnn"]["failed"] == 1 and summary["minicnn"]["stats"]["fit_s"] is None


def test_other_processes_cpu_is_machine_busy_time_minus_the_workers(bench_mnist):
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN)  # no child ends before the call
    # Machine: 6 busy CPU seconds over 2 s of wall time, none of it ours -> 3 cores' worth.
    assert bench_mnist.others_cpu_cores((10.0, 100.0), (16.0, 104.0), children, 2.0) == 3.0
    assert bench_mnist.others_cpu_cores(None, (16.0, 104.0), children, 2.0) is None


def test_profile_api_is_feature_detected():
    workers = load("_workers")

    class WithProfile:
        def fit(self, x, y, epochs=1, profile=False):
            pass

    class WithoutProfile:
        def fit(self, x, y, epochs=1):
            pass

    assert workers.minicnn_profile_supported(WithProfile()) is True
    assert workers.minicnn_profile_supported(WithoutProfile()) is False


def test_profile_table_is_printed_and_kept(capsys):
    import numpy as np

    from minicnn import layers, models, set_random_seed

    workers = load("_workers")
    set_random_seed(0)
    model = models.Sequential([layers.Flatten(input_shape=(4, 4, 1)),
                               layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    if not workers.minicnn_profile_supported(model):
        pytest.fail("this minicnn's fit() lost profile=True; bench_mnist --profile relies on it")
    x = np.random.default_rng(0).random((40, 4, 4, 1), dtype=np.float32)
    history = model.fit(x, np.arange(40) % 3, batch_size=8, epochs=1, verbose=0, profile=True)
    out = {}
    workers.print_minicnn_profile(history, out)
    assert out["profile"] == history.profile.as_dict()
    assert str(history.profile) in capsys.readouterr().out


# ----------------------------------------------------------------------------- fabricated inputs


def fabricated_record(framework, seed, epochs, first_batch, acc, rss, ips, load=1.0):
    """A FABRICATED worker record (invented numbers, not a measurement) for the report code."""
    return {"framework": framework, "seed": seed, "loadavg_before": [load, load, load],
            "result": {"framework": framework, "seed": seed, "epoch_s": epochs,
                       "first_batch_s": first_batch, "startup_s": 0.02, "import_s": 0.3,
                       "fit_s": sum(epochs), "test_accuracy": acc, "test_loss": 0.05,
                       "predict_images_per_s": ips, "peak_rss_mb": rss,
                       "versions": {"minicnn": "0.1.0", "keras": "3.15.1",
                                    "tensorflow": "2.21.0", "torch": "2.13.0+cpu"},
                       "config": {"layout": "NCHW", "threads": 2, "malloc_env": {}}}}


def fabricated_runs():
    """Interleaved FABRICATED runs: minicnn, keras, torch for seeds 1 and 2."""
    return [
        fabricated_record("minicnn", 1, [4.0, 2.9, 3.1, 3.0], 1.0, 0.9880, 200, 50000, 0.5),
        fabricated_record("keras", 1, [8.0, 6.0, 6.2, 5.8], 4.0, 0.9890, 1000, 24000, 0.7),
        fabricated_record("torch", 1, [9.0, 8.0, 8.0, 8.0], 2.0, 0.9860, 800, 22000, 0.9),
        fabricated_record("minicnn", 2, [4.4, 3.3, 3.5, 3.4], 1.2, 0.9850, 220, 40000, 1.5),
        fabricated_record("keras", 2, [8.2, 7.0, 7.2, 6.8], 3.0, 0.9840, 1100, 26000, 1.1),
        fabricated_record("torch", 2, [9.0, 8.4, 8.6, 8.2], 2.0, 0.9860, 900, 20000, 1.3),
    ]


def test_summary_medians_and_ranges_from_fabricated_runs(bench_mnist):
    summary = bench_mnist.summarize(fabricated_runs(), ["minicnn", "keras", "torch"])
    mine = summary["minicnn"]["stats"]
    # Later-epoch median per run: median(2.9, 3.1, 3.0) = 3.0 and median(3.3, 3.5, 3.4) = 3.4.
    assert mine["epoch_rest_s"]["values"] == pytest.approx([3.0, 3.4])
    assert mine["epoch_rest_s"]["median"] == pytest.approx(3.2)
    assert (mine["epoch_first_s"]["min"], mine["epoch_first_s"]["max"]) == (4.0, 4.4)
    assert mine["load_1min"]["values"] == [0.5, 1.5]
    assert summary["minicnn"]["accuracy_by_seed"] == {"1": pytest.approx(98.80),
                                                      "2": pytest.approx(98.50)}
    assert summary["keras"]["label"] == "Keras 3.15.1 (TF 2.21.0)"
    assert summary["torch"]["label"] == "PyTorch 2.13.0+cpu (NCHW, 2 threads)"


def test_ratios_against_targets_from_fabricated_runs(bench_mnist):
    summary = bench_mnist.summarize(fabricated_runs(), ["minicnn", "keras", "torch"])
    values = {r["name"]: r for r in bench_mnist.compute_ratios(summary)}
    keras_epoch = values["s/epoch: minicnn / keras"]
    # Later-epoch medians: minicnn 3.2 s, Keras median(6.0, 7.0) = 6.5 s; issue 14: <= 0.4.
    assert keras_epoch["value"] == pytest.approx(3.2 / 6.5) and keras_epoch["met"] is False
    assert keras_epoch["target"] == "<= 0.4"
    torch_epoch = values["s/epoch: minicnn / torch"]
    assert torch_epoch["value"] == pytest.approx(3.2 / 8.2) and torch_epoch["met"] is True
    # One PyTorch configuration ran: it is PyTorch's best.
    best = values["s/epoch: minicnn / PyTorch's best (the fastest of torch: torch)"]
    assert best["value"] == torch_epoch["value"] and best["target"] == "<= 0.5"
    predict = values["predict() throughput: minicnn / keras"]
    assert predict["value"] == pytest.approx(45000 / 25000) and predict["met"] is False
    assert predict["target"] == ">= 3"
    start = values["start to first batch: minicnn / Keras"]
    assert start["value"] == pytest.approx(1.1 / 3.5) and start["met"] is True
    rss = values["peak RSS: minicnn / Keras"]
    assert rss["value"] == pytest.approx(210 / 1050) and rss["met"] is True
    acc = values["test accuracy: minicnn mean - Keras mean (points)"]
    # Means over seeds 1, 2: minicnn 98.65 %, Keras 98.65 %.
    assert acc["value"] == pytest.approx(0.0, abs=1e-9) and acc["met"] is True
    # No peak was measured: no efficiency is made up (GFLOP/s alone are, from the model).
    assert not [name for name in values if name.startswith("efficiency")]
    assert summary["minicnn"]["stats"]["train_gflops"]["median"] == pytest.approx(
        13_081_872 * 60000 / 3.2 / 1e9, rel=0.02)


def test_pytorch_best_is_the_fastest_configuration_and_jax_is_judged(bench_mnist):
    runs = fabricated_runs()
    runs += [
        fabricated_record("torch-best", 1, [9.0, 7.0, 7.2, 7.1], 2.0, 0.9860, 800, 21000),
        fabricated_record("torch-plain", 1, [9.0, 6.4, 6.6, 6.5], 2.0, 0.9860, 800, 21000),
        fabricated_record("jax", 1, [15.0, 8.0, 8.0, 8.0], 6.0, 0.9870, 600, 60000),
    ]
    runs[-2]["result"]["config"]["loop"] = "plain"
    frameworks = ["minicnn", "keras", "torch", "torch-best", "torch-plain", "jax"]
    summary = bench_mnist.summarize(runs, frameworks)
    assert summary["torch-plain"]["label"].endswith("(NCHW, 2 threads, plain loop)")
    assert summary["jax"]["label"].startswith("JAX ")
    values = {r["name"]: r for r in bench_mnist.compute_ratios(summary)}
    # Later-epoch medians: torch 8.2, torch-best 7.1, torch-plain 6.5 -> the plain loop wins.
    best = values["s/epoch: minicnn / PyTorch's best (the fastest of torch, torch-best, "
                  "torch-plain: torch-plain)"]
    assert best["value"] == pytest.approx(3.2 / 6.5) and best["met"] is True
    assert values["s/epoch: minicnn / jax"]["value"] == pytest.approx(3.2 / 8.0)
    assert values["s/epoch: minicnn / jax"]["met"] is True  # 0.4 <= 0.4
    jax_predict = values["predict() throughput: minicnn / jax"]
    assert jax_predict["value"] == pytest.approx(45000 / 60000) and jax_predict["met"] is False


def test_two_checkouts_are_compared_with_the_first(bench_mnist):
    # FABRICATED: an old and a new minicnn, interleaved with Keras.
    old = [fabricated_record("minicnn:old", s, [4.0, 3.0, 3.0, 3.0], 1.0, 0.988, 200, 50000)
           for s in (1, 2)]
    new = [fabricated_record("minicnn:new", s, [4.0, 3.1, 3.2, 3.1], 1.0, 0.988, 200, 46000)
           for s in (1, 2)]
    summary = bench_mnist.summarize(old + new, ["minicnn:old", "minicnn:new"])
    values = {r["name"]: r for r in bench_mnist.compute_ratios(summary)}
    epoch = values["s/epoch: minicnn:new / minicnn:old"]
    assert epoch["value"] == pytest.approx(3.1 / 3.0) and epoch["met"] is True  # within 5 %
    predict = values["predict() throughput: minicnn:new / minicnn:old"]
    assert predict["value"] == pytest.approx(0.92) and predict["met"] is False  # 8 % slower


def test_turn_ratios_are_medians_of_per_round_ratios(bench_mnist):
    turns = load("_turns")
    # FABRICATED: the machine slows down 2x in round 2; "new" is 4 % slower than "old" in
    # every round. Ratios of the medians would mix the drift in; per-round ratios do not.
    rounds = [{"old": {"step_ms": 5.0, "predict_images_per_s": 20000},
               "new": {"step_ms": 5.2, "predict_images_per_s": 19000}},
              {"old": {"step_ms": 10.0, "predict_images_per_s": 10000},
               "new": {"step_ms": 10.4, "predict_images_per_s": 9500}},
              {"old": {"step_ms": 5.0, "predict_images_per_s": 20000},
               "new": {"step_ms": 5.4, "predict_images_per_s": 19000}}]
    summary = turns.summarize_turns({"rounds": rounds, "steps": 100})
    assert summary["columns"]["old"]["step_ms"] == 5.0
    step = summary["ratios"]["new"]["step"]
    assert step["median"] == pytest.approx(1.04) and step["max"] == pytest.approx(1.08)
    assert summary["ratios"]["new"]["predict"]["median"] == pytest.approx(0.95)
    rows = {r["name"]: r for r in turns.turn_ratios(summary, 0.05)}
    row = rows["s/step, interleaved turns: new / old"]
    assert row["met"] is True and "3 alternating turns of 100 steps" in row["note"]
    assert rows["predict() throughput, interleaved turns: new / old"]["met"] is True
    summary["ratios"]["new"]["step"]["median"] = 1.06
    assert turns.turn_ratios(summary, 0.05)[0]["met"] is False
    # The medians per column (5.4 / 5.0 = 1.08) are not what is judged.
    assert "| ms per training step | 5.00 | 5.40 |" in turns.markdown(summary)


def test_turns_alternate_two_persistent_workers_on_real_mnist(bench_mnist, mnist_dir, tmp_path,
                                                              capsys):
    # Two columns of this same checkout: the protocol end to end, no timing judged.
    report = bench_mnist.main([
        "--frameworks", "minicnn", "--minicnn", f"a={REPO_ROOT},b={REPO_ROOT}", "--epochs", "1",
        "--seeds", "1", "--limit", "256", "--no-warmup", "--peak-size", "0", "--no-chart",
        "--turns", "3", "--turn-steps", "4", "--out-dir", str(tmp_path)])
    out = capsys.readouterr().out
    rounds = report["turns"]["raw"]["rounds"]
    assert len(rounds) == 3 and all(list(r) in (["minicnn:a", "minicnn:b"],
                                                ["minicnn:b", "minicnn:a"]) for r in rounds)
    assert list(rounds[1]) == ["minicnn:b", "minicnn:a"]  # the order alternates
    for r in rounds:
        for figures in r.values():
            assert figures["step_ms"] > 0 and figures["predict_images_per_s"] > 0
    names = [r["name"] for r in report["ratios"]]
    assert "s/step, interleaved turns: minicnn:b / minicnn:a" in names
    assert "Interleaved turns (3 rounds of 4 training steps" in out
    saved = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert saved["turns"]["n_rounds"] == 3


def test_efficiency_is_training_flops_per_second_over_the_peak(bench_mnist):
    record = fabricated_record("minicnn", 1, [4.0, 3.0, 2.0, 3.0], 1.0, 0.988, 200, 50000)
    record["result"].update(flops_per_image=13_081_872, train_images=60000)
    metrics = bench_mnist.run_metrics(record, peak_gflops=200.0)
    # Later epochs' median 3.0 s: 13,081,872 x 60,000 / 3.0 s = 261.6 GFLOP/s.
    assert metrics["train_gflops"] == pytest.approx(261.63744)
    assert metrics["efficiency_pct"] == pytest.approx(130.81872)
    assert bench_mnist.run_metrics(record)["efficiency_pct"] is None  # no peak measured
    peak = {"peak": {"gflops": {"1": 95.0, "2": 185.0}}}
    assert bench_mnist.peak_gflops_of(peak) == 185.0 and bench_mnist.peak_gflops_of(None) is None
    # A core taken by another process during the 2-thread product: the 1-thread rate counts.
    assert bench_mnist.peak_gflops_of({"peak": {"gflops": {"1": 95.0, "2": 60.0}}}) == 95.0


def test_accuracy_gap_beyond_target_is_flagged(bench_mnist):
    runs = fabricated_runs()
    runs[0]["result"]["test_accuracy"] = 0.9800  # seed 1: 98.00 % instead of 98.80 %
    summary = bench_mnist.summarize(runs, ["minicnn", "keras", "torch"])
    acc = [r for r in bench_mnist.compute_ratios(summary) if "accuracy" in r["name"]][0]
    assert acc["value"] == pytest.approx((98.00 + 98.50) / 2 - 98.65)
    assert acc["met"] is False


def test_table_and_json_from_fabricated_runs(bench_mnist, tmp_path):
    args = SimpleNamespace(epochs=4, seeds=[1, 2], frameworks=["minicnn", "keras", "torch"],
                           batch_size=32, predict_batch_size=32, predict_repeats=3, limit=None,
                           torch_channels_last=False, torch_keep_freed_memory=False,
                           wait_idle=None, max_wait=300.0, model="tutorial")
    machine = {"host": "test/host", "cpu": "Fabricated CPU", "usable_cpus": 2,
               "memory_gib": 24, "python": "3.11", "minicnn_git": "abc123"}
    report = bench_mnist.build_report(args, machine, [], fabricated_runs(),
                                      "2026-01-02T03:04:05+00:00", fabricated=True)
    table = bench_mnist.markdown_table(report["summary"], report["ratios"], report)
    assert "FABRICATED INPUT, not a measurement" in table
    assert "| s/epoch, later epochs (median) | 3.20 [3.00-3.40] | 6.50 [6.00-7.00] |" in table
    assert "| test accuracy by seed (%) | 98.80 / 98.50 | 98.90 / 98.40 |" in table
    assert "| predict() images/s | 45,000 [40,000-50,000] |" in table
    assert "| peak RSS: minicnn / Keras | 0.20 | <= 0.4 | yes |" in table
    assert "no warm-up process" in table
    assert "| PyTorch 2.13.0+cpu (NCHW, 2 threads) [torch] |" in table  # keys name columns
    assert "Peak:" not in table  # none was measured; nothing is invented

    paths = bench_mnist.write_outputs(report, tmp_path, chart=True)
    # Host characters outside [A-Za-z0-9._-] become '_' in the file name.
    assert [p.name for p in paths] == ["2026-01-02-test_host.json", "2026-01-02-test_host.png"]
    saved = json.loads(paths[0].read_text())
    assert saved["fabricated"] is True
    assert saved["summary"]["keras"]["stats"]["epoch_rest_s"]["median"] == pytest.approx(6.5)
    assert [r["target"] for r in saved["ratios"]] == ["<= 0.4", "<= 0.5", "<= 0.5", ">= 3",
                                                      "<= 1", "<= 0.4", "within +-0.3"]
    assert paths[1].read_bytes()[:4] == b"\x89PNG"

    # --from-json: the saved runs give the same table again, and the chart is redrawn.
    paths[1].unlink()
    again = bench_mnist.main(["--from-json", str(paths[0])])
    assert bench_mnist.markdown_table(again["summary"], again["ratios"], again) == table
    assert paths[1].read_bytes()[:4] == b"\x89PNG"


# ----------------------------------------------------------------------------- models, FLOPs


def test_model_flops_follow_the_layer_shapes():
    model = load("_model")
    # Tutorial, per image: conv1 26*26*25 outputs x 9 taps, no input gradient (x2); conv2
    # 11*11*64 x 9*25 and conv3 3*3*64 x 9*64, dense 64x64 and 64x10, each x3; 2 FLOPs a MAC.
    conv1, conv2, conv3 = 26 * 26 * 25 * 9, 11 * 11 * 64 * 9 * 25, 3 * 3 * 64 * 9 * 64
    tutorial = 2 * (2 * conv1 + 3 * (conv2 + conv3 + 64 * 64 + 64 * 10))
    assert model.training_flops_per_image("tutorial") == tutorial == 13_081_872
    # keras.io's convnet: conv 32 on 28x28x1, conv 64 on 13x13x32, dense 1600 -> 10.
    convnet = 2 * (2 * 26 * 26 * 32 * 9 + 3 * (11 * 11 * 64 * 9 * 32 + 1600 * 10))
    assert model.training_flops_per_image("convnet") == convnet
    wide = 2 * (2 * 26 * 26 * 50 * 9 + 3 * (11 * 11 * 128 * 9 * 50 + 3 * 3 * 128 * 9 * 128
                                            + 128 * 128 + 128 * 10))
    assert model.training_flops_per_image("tutorial-wide") == wide
    assert model.recipe("convnet") == {"batch_size": 128, "loss": "categorical_crossentropy",
                                       "one_hot": True}
    assert "Dropout" in model.needs("convnet") and "Dropout" not in model.needs("tutorial")
    with pytest.raises(KeyError, match="unknown model 'lenet'; known: tutorial"):
        model.specs("lenet")


def test_model_specs_build_minicnn_models_of_the_counted_shapes():
    import numpy as np

    from minicnn import layers, models

    spec = load("_model")
    for name in ("tutorial", "tutorial-wide"):
        model = models.Sequential(spec.keras_layers(layers, name))
        model.build(spec.INPUT_SHAPE)
        out_shapes = [tuple(s for s in layer.output_shape if s is not None)
                      for layer in model.layers]
        assert out_shapes == [shape_out for _spec, _in, shape_out in spec.shapes(name)]
        probs = model.predict(np.zeros((2, 28, 28, 1), np.float32))
        assert probs.shape == (2, 10)
        np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)


def test_convnet_worker_skips_minicnn_cleanly_until_it_has_dropout(bench_mnist, mnist_dir,
                                                                 tmp_path, monkeypatch):
    from minicnn import layers

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p))
    report = bench_mnist.main(["--quick", "--model", "convnet", "--frameworks", "minicnn",
                               "--limit", "256", "--no-warmup", "--predict-repeats", "1",
                               "--peak-size", "0", "--no-chart", "--out-dir", str(tmp_path)])
    assert report["config"]["batch_size"] == 128  # the convnet's recipe
    (run,) = report["runs"]
    assert "error" not in run, run.get("error")
    if hasattr(layers, "Dropout"):  # issue 10 landed: the convnet now trains on minicnn
        assert run["result"]["model"] == "convnet" and run["result"]["epoch_s"]
    else:
        assert run["skipped"].startswith(f"minicnn at {REPO_ROOT / 'minicnn'} has no "
                                         "layers.Dropout yet")
        summary = report["summary"]["minicnn"]
        assert summary["failed"] == 0 and summary["skipped"] == run["skipped"]
        table = bench_mnist.markdown_table(report["summary"], report["ratios"], report)
        assert f"Skipped: minicnn: {run['skipped']}." in table


# ----------------------------------------------------------------------------- the CIFAR ResNet


def test_resnet_cifar_nodes_weights_and_flops():
    model = load("_model")
    nodes = model.specs("resnet-cifar")
    convs = [(n, p) for n, op, _i, p in nodes if op == "conv"]
    # Stem, two per block, and a 1x1 projection where stages 2 and 3 change the shape.
    assert [(p["filters"], p["kernel"], p["strides"]) for _n, p in convs] == [
        (16, 3, 1), (16, 3, 1), (16, 3, 1), (32, 3, 2), (32, 3, 1), (32, 1, 2),
        (64, 3, 2), (64, 3, 1), (64, 1, 2)]
    assert sum(1 for _n, op, _i, _p in nodes if op == "bn") == 9  # one after every conv
    adds = [(n, i) for n, op, i, _p in nodes if op == "add"]
    assert adds == [("s1b1_add", ("s1b1_b_bn", "stem_relu")),  # identity shortcut
                    ("s2b1_add", ("s2b1_b_bn", "s2b1_proj_bn")),
                    ("s3b1_add", ("s3b1_b_bn", "s3b1_proj_bn"))]
    shapes = model.graph_shapes("resnet-cifar")
    assert shapes["s1b1_relu2"] == (32, 32, 16) and shapes["s2b1_relu2"] == (16, 16, 32)
    assert shapes["s3b1_relu2"] == (8, 8, 64) and shapes["predictions"] == (10,)
    # Weights by hand: convs k*k*C*F, BN 2C trainable + 2C moving, Dense 64*10 + 10.
    conv = (9 * 3 * 16 + 2 * 9 * 16 * 16 + 9 * 16 * 32 + 9 * 32 * 32 + 16 * 32
            + 9 * 32 * 64 + 9 * 64 * 64 + 32 * 64)
    bn_channels = 3 * 16 + 3 * 32 + 3 * 64
    assert model.graph_weight_count("resnet-cifar") == (conv + 2 * bn_channels + 650,
                                                        2 * bn_channels) == (78_042, 672)
    # FLOPs per training image: forward multiply-adds per conv (output pixels x filters x
    # k*k*C), 2 FLOPs each; x2 for the stem (no image gradient), x3 for the rest.
    stem = 32 * 32 * 16 * 27
    rest = (2 * 32 * 32 * 16 * 144 + 16 * 16 * 32 * 144 + 16 * 16 * 32 * 288
            + 16 * 16 * 32 * 16 + 8 * 8 * 64 * 288 + 8 * 8 * 64 * 576 + 8 * 8 * 64 * 32 + 640)
    assert model.training_flops_per_image("resnet-cifar") == 2 * (2 * stem + 3 * rest)
    assert model.training_flops_per_image("resnet-cifar") == 74_125_056
    assert model.needs("resnet-cifar") == ["Add", "BatchNormalization", "Conv2D", "Dense",
                                           "GlobalAveragePooling2D", "ReLU"]
    assert model.recipe("resnet-cifar")["batch_size"] == 128 and model.is_graph("resnet-cifar")
    assert model.input_shape("resnet-cifar") == (32, 32, 3) == model.CIFAR_SHAPE
    assert model.train_images("resnet-cifar") == 50000 and model.train_images("tutorial") == 60000
    assert model.train_images("resnet-cifar", limit=512) == 512
    with pytest.raises(ValueError, match="is a graph"):
        model.keras_layers(None, "resnet-cifar")


KERAS_BUILD = r"""
import json, sys
import numpy as np
import keras
import _model

net = _model.functional_model(keras, "resnet-cifar")
def source(tensor):
    return tensor._keras_history.operation.name
bn, conv = net.get_layer("stem_bn").get_config(), net.get_layer("s2b1_a_conv").get_config()
print(json.dumps({
    "backend": keras.backend.backend(),
    "trainable": sum(int(np.prod(w.shape)) for w in net.trainable_weights),
    "params": net.count_params(),
    "shapes": [list(net.input_shape), list(net.output_shape)],
    "kinds": [type(layer).__name__ for layer in net.layers],
    "bn": [bn["momentum"], bn["epsilon"]],
    "conv": [list(conv["strides"]), conv["padding"], conv["use_bias"]],
    "adds": {name: [source(t) for t in net.get_layer(name).input]
             for name in ("s1b1_add", "s2b1_add", "s3b1_add")},
    "probs": net.predict(np.zeros((2, 32, 32, 3), np.float32), verbose=0).sum(1).tolist(),
}))
"""


def test_resnet_cifar_builds_with_kerass_functional_api():
    # In a fresh process on Keras's NumPy backend: building the same model on JAX compiles
    # every weight initialiser (30 s on a busy machine); the graph and weights are the same.
    import subprocess

    env = {**os.environ, "KERAS_BACKEND": "numpy", "PYTHONPATH": str(BENCH)}
    proc = subprocess.run([sys.executable, "-c", KERAS_BUILD], env=env, capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["backend"] == "numpy"
    assert (got["trainable"], got["params"]) == (78_042, 78_714)  # what _model counts
    assert got["shapes"] == [[None, 32, 32, 3], [None, 10]]
    kinds = got["kinds"]
    assert kinds.count("Conv2D") == 9 and kinds.count("Add") == 3
    assert kinds.count("BatchNormalization") == 9
    assert kinds[-2:] == ["GlobalAveragePooling2D", "Dense"]
    assert got["bn"] == [0.99, 1e-3]
    assert got["conv"] == [[2, 2], "same", False]
    # Wired as the nodes say: the first block adds the stem's output back in, the others
    # the 1x1 projection.
    assert got["adds"] == {"s1b1_add": ["s1b1_b_bn", "stem_relu"],
                           "s2b1_add": ["s2b1_b_bn", "s2b1_proj_bn"],
                           "s3b1_add": ["s3b1_b_bn", "s3b1_proj_bn"]}
    assert got["probs"] == pytest.approx([1.0, 1.0], rel=1e-5)  # softmax output


class _FakeNN:
    """Stand-ins for torch.nn that record how torch_graph_model builds its modules."""

    class Module:
        def __init__(self, *args, **kwargs):
            self.args, self.kwargs = args, kwargs

    def __getattr__(self, name):
        return type(name, (self.Module,), {})

    class ModuleDict(dict):
        pass


def test_torch_graph_model_mirrors_the_nodes():
    workers = load("_workers")
    model = load("_model")
    net = workers.torch_graph_model(model.specs("resnet-cifar"), _FakeNN())
    built = {name: (type(m).__name__, m.args, m.kwargs) for name, m in net.ops.items()}
    assert built["stem_conv"] == ("Conv2d", (3, 16, 3), {"stride": 1, "padding": 1,
                                                         "bias": False})
    assert built["s2b1_a_conv"] == ("Conv2d", (16, 32, 3), {"stride": 2, "padding": 1,
                                                            "bias": False})
    assert built["s3b1_proj_conv"] == ("Conv2d", (32, 64, 1), {"stride": 2, "padding": 0,
                                                               "bias": False})
    # Keras's BatchNormalization: moving = 0.99 moving + 0.01 batch, epsilon 1e-3.
    assert built["s3b1_b_bn"] == ("BatchNorm2d", (64,), {"eps": 1e-3,
                                                         "momentum": pytest.approx(0.01)})
    assert built["predictions"] == ("Linear", (64, 10), {})
    assert sum(kind == "Conv2d" for kind, _a, _k in built.values()) == 9
    assert [op for _n, op, _i in net.order].count("add") == 3  # computed in forward


def test_random_cifar_data_is_the_same_for_every_run():
    workers = load("_workers")
    (x, y), (xt, yt) = workers.load_random_cifar(limit=64)
    (x2, y2), _ = workers.load_random_cifar(limit=64)
    assert x.shape == (64, 32, 32, 3) and xt.shape == (64, 32, 32, 3)
    assert x.dtype.name == "float32" and 0 <= x.min() and x.max() <= 1
    assert (x * 255).round().max() == 255 and y.dtype.name == "uint8" and y.max() <= 9
    assert (x == x2).all() and (y == y2).all()  # DATA_SEED, not the run's seed
    assert not (x == xt).all()


def test_functional_api_detection():
    workers = load("_workers")
    built = []

    class Dense:
        def __init__(self, units):
            self.units = units

        def __call__(self, x):
            return ("dense", self.units, x)

    class Sequential:
        def __init__(self, layers=None, name=None):
            raise TypeError("Sequential: layers must be a list")

    class Functional:
        def __init__(self, *args, **kwargs):  # as minicnn's Model: the probe must decide
            built.append(args)

    layers = SimpleNamespace(Dense=Dense)
    no_input = SimpleNamespace(layers=layers, models=SimpleNamespace(Model=Functional))
    assert workers.minicnn_functional_api(no_input) == (
        None, ["minicnn.Input", "Model(inputs, outputs)"])
    old = SimpleNamespace(layers=SimpleNamespace(Dense=Dense, Input=lambda shape: shape),
                          models=SimpleNamespace(Model=Sequential))
    api, missing = workers.minicnn_functional_api(old)
    assert api is None and missing == [
        "Model(inputs, outputs) (TypeError: Sequential: layers must be a list)"]
    new = SimpleNamespace(layers=layers, Input=lambda shape: ("input", shape),
                          models=SimpleNamespace(Model=Functional))
    api, missing = workers.minicnn_functional_api(new)
    assert missing is None and api.Model is Functional and api.layers is layers
    assert built == [(("input", (2,)), ("dense", 1, ("input", (2,))))]  # the probe model


def test_cifar_benchmark_trains_minicnn_with_the_functional_api(tmp_path, monkeypatch):
    import minicnn

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p))
    monkeypatch.delenv("MINICNN_DATA_DIR", raising=False)  # random data: nothing to read
    workers = load("_workers")
    # minicnn has everything the ResNet needs, so its worker trains it instead of skipping.
    api, missing_api = workers.minicnn_functional_api(minicnn)
    assert api is not None and missing_api is None
    assert workers.minicnn_missing_layers(minicnn.layers, "resnet-cifar") == []
    net = load("_model").functional_model(api, "resnet-cifar")
    assert type(net).__name__ == "Functional" and net.name == "resnet-cifar"
    assert net.output_shape == (None, 10)
    trainable = sum(w.size for w in net.trainable_weights)
    assert (trainable, net.count_params() - trainable) == \
        load("_model").graph_weight_count("resnet-cifar")
    bench_cifar = load("bench_cifar")
    report = bench_cifar.main(["--quick", "--frameworks", "minicnn", "--limit", "256",
                               "--no-warmup", "--predict-repeats", "1", "--peak-size", "0",
                               "--no-chart", "--out-dir", str(tmp_path)])
    assert report["config"]["model"] == "resnet-cifar" and report["config"]["batch_size"] == 128
    (run,) = report["runs"]
    assert "error" not in run and "skipped" not in run, run
    r = run["result"]
    assert r["model"] == "resnet-cifar" and r["train_images"] == 256 and r["epoch_s"]
    assert r["flops_per_image"] == 74_125_056
    assert r["test_loss"] == r["test_loss"] and 0 <= r["test_accuracy"] <= 1  # not NaN
    table = bench_cifar.bench_mnist.markdown_table(report["summary"], report["ratios"], report)
    assert "Skipped" not in table and "Random CIFAR-shaped data" in table
    saved = list(tmp_path.glob("*-resnet-cifar-quick.json"))
    assert len(saved) == 1 and json.loads(saved[0].read_text())["config"]["epochs"] == 1


def test_random_labels_leave_the_accuracy_ratio_out(bench_mnist):
    summary = bench_mnist.summarize(fabricated_runs(), ["minicnn", "keras", "torch"])
    names = [r["name"] for r in bench_mnist.compute_ratios(summary, "resnet-cifar")]
    assert "s/epoch: minicnn / keras" in names and "peak RSS: minicnn / Keras" in names
    assert not [n for n in names if "accuracy" in n]
    assert [n for n in (r["name"] for r in bench_mnist.compute_ratios(summary))
            if "accuracy" in n]  # an MNIST model keeps it


# ----------------------------------------------------------------------------- BLAS, environment


def test_blas_info_names_numpys_openblas_kernel():
    import numpy as np

    blas_mod = load("_blas")
    info = blas_mod.blas_info()
    config = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    assert "openblas" in config["name"]  # NumPy's wheels: the project's machines have these
    assert "openblas" in info["library"] and info["kernel"]
    # threadpoolctl (when installed) and OpenBLAS's own corename agree on the kernel.
    lib = blas_mod._numpy_openblas()
    assert blas_mod._openblas_call(lib, "get_corename", ctypes.c_char_p).decode() == (
        info["kernel"])
    assert info["env"] == {k: os.environ[k] for k in blas_mod.FORCING_VARS if k in os.environ}


def test_peak_measure_reports_flop_and_fma_rates_per_thread_count():
    peak = load("_blas").measure_peak(size=128, repeats=2, threads=(1, 2))
    assert peak["size"] == 128 and set(peak["gflops"]) == {"1", "2"}
    for n in ("1", "2"):
        assert peak["gflops"][n] > 0
        assert peak["gfma"][n] == pytest.approx(peak["gflops"][n] / 2, abs=0.1)


def test_worker_environment_native_blas_and_checkouts(bench_mnist, tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    for root in (old, new):
        (root / "minicnn").mkdir(parents=True)
        (root / "minicnn" / "__init__.py").write_text("")
    args = bench_mnist.parse_args(["--frameworks", "minicnn,torch-best",
                                   "--minicnn", f"old={old},new={new}", "--native-blas"])
    assert args.frameworks == ["minicnn:old", "minicnn:new", "torch-best"]
    base = {"OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_L2_SIZE": "524288",
            "PYTHONPATH": "/somewhere", "HOME": "/root"}
    before = dict(base)
    env, changes = bench_mnist.worker_env("minicnn:new", args, base)
    assert base == before  # the caller's environment is never changed
    assert "OPENBLAS_CORETYPE" not in env and "OPENBLAS_L2_SIZE" not in env
    assert changes["removed"] == ["OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"]
    assert env["PYTHONPATH"] == os.pathsep.join([str(new), "/somewhere"])
    assert env["HOME"] == "/root"
    env, _ = bench_mnist.worker_env("torch-best", args, base)
    assert env["PYTHONPATH"] == "/somewhere" and env["MALLOC_TRIM_THRESHOLD_"] == str(1 << 30)
    assert bench_mnist.worker_plan("torch-plain", args)[1] == [
        "--model", "tutorial", "--torch-channels-last", "--torch-plain-loop"]
    assert bench_mnist.worker_plan("keras-jax", args)[1][-2:] == ["--keras-backend", "jax"]
    # Without --native-blas the forcing variables are inherited as they are.
    plain = bench_mnist.parse_args(["--frameworks", "minicnn"])
    env, changes = bench_mnist.worker_env("minicnn", plain, base)
    assert env["OPENBLAS_CORETYPE"] == "Haswell" and changes["removed"] == []


@pytest.mark.parametrize("text, message", [
    ("old", "expected NAME=PATH, got 'old'"),
    ("a=.,a=.", "the name 'a' is given twice"),
    ("x=/nonexistent/checkout", "/nonexistent/checkout holds no minicnn/__init__.py"),
])
def test_bad_checkout_lists_are_refused(bench_mnist, text, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        bench_mnist.parse_checkouts(text)


def test_header_says_whether_the_blas_kernel_was_forced(bench_mnist):
    peak = {"blas": {"library": "openblas", "version": "0.3.31", "kernel": "Haswell",
                     "source": "threadpoolctl"},
            "peak": {"size": 2048, "repeats": 5, "gflops": {"1": 95.0, "2": 185.0},
                     "gfma": {"1": 47.5, "2": 92.5}}}
    forced = {"peak": peak, "config": {"forcing_env": {"OPENBLAS_CORETYPE": "Haswell"}}}
    lines = bench_mnist.blas_lines(forced, {})
    assert lines[0] == "BLAS: NumPy's openblas 0.3.31, kernel Haswell (from threadpoolctl)."
    assert "inherited OPENBLAS_CORETYPE=Haswell" in lines[1] and "--native-blas" in lines[1]
    assert lines[2].startswith("Peak: NumPy float32 matrix product 2048x2048 (fastest of 5): "
                               "1 thread 95.0 GFLOP/s = 47.5 G FMA/s; 2 threads 185.0 GFLOP/s")
    native = {"peak": peak, "config": {"native_blas": True,
                                       "forcing_env": {"OPENBLAS_CORETYPE": "Haswell"}}}
    assert "removed from the workers' environment (OPENBLAS_CORETYPE=Haswell)" in (
        bench_mnist.blas_lines(native, {})[1])
    assert "not set" in bench_mnist.blas_lines({"config": {"forcing_env": {}}}, {})[0]
    assert "not recorded" in bench_mnist.blas_lines({"config": {}}, {})[0]  # an old run
    assert not any("Warning" in line for line in lines)
    busy = {"peak": {**peak, "peak": {**peak["peak"], "gflops": {"1": 95.0, "2": 60.0},
                                      "gfma": {"1": 47.5, "2": 30.0}}}, "config": {}}
    assert bench_mnist.blas_lines(busy, {})[-1].startswith(
        "**Warning**: 2 threads reached only 0.63x the 1-thread rate")


# ----------------------------------------------------------------------------- bench_scaling


def test_scaling_tables_from_a_quick_minicnn_run(mnist_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p))
    scaling = load("bench_scaling")
    report = scaling.main(["--frameworks", "minicnn", "--epochs", "1", "--batch-sizes", "32,64",
                           "--image-counts", "256,512", "--no-warmup", "--peak-size", "128",
                           "--out-dir", str(tmp_path)])
    rows = {(r["table"], r["label"]): r for r in report["results"]}
    assert list(rows) == [("batch", "batch 32"), ("batch", "batch 64"), ("images", "256 images"),
                          ("images", "512 images"), ("model", "tutorial"),
                          ("model", "tutorial-wide")]
    assert [(r["model"], r["batch_size"], r["images"]) for r in rows.values()] == [
        ("tutorial", 32, 512), ("tutorial", 64, 512), ("tutorial", 32, 256),
        ("tutorial", 32, 512), ("tutorial", 32, 512), ("tutorial-wide", 32, 512)]
    # The same setting is run once and shown in every table that needs it.
    assert rows[("batch", "batch 32")]["runs"] is rows[("images", "512 images")]["runs"]
    wide = rows[("model", "tutorial-wide")]["runs"][0]["result"]
    assert wide["model"] == "tutorial-wide" and wide["flops_per_image"] == 51_103_008
    assert rows[("batch", "batch 64")]["runs"][0]["result"]["batch_size"] == 64
    out = capsys.readouterr().out
    epoch = rows[("images", "256 images")]["runs"][0]["result"]["epoch_s"][0]
    assert f"| 256 images | {epoch:.2f} | {epoch / 256 * 10000:.2f} |" in out
    assert "**Tutorial model and tutorial-wide (hidden widths x2)**" in out
    saved = json.loads(next(tmp_path.glob("*-scaling.json")).read_text())
    assert saved["schema"] == "minicnn-bench-scaling/1" and len(saved["results"]) == 6


# ----------------------------------------------------------------------------- bench_layers


def test_best_of_rounds_keeps_each_direction_fastest_round():
    layers_bench = load("bench_layers")
    # FABRICATED entries of two rounds: forward fastest in round 2, backward in round 1.
    rounds = [{"forward_ms": 2.0, "backward_ms": 3.0, "forward_gflops": 5.0,
               "backward_gflops": 6.0, "forward_median_ms": 2.5, "backward_median_ms": 3.5,
               "repeats": 10},
              {"forward_ms": 1.0, "backward_ms": 4.0, "forward_gflops": 10.0,
               "backward_gflops": 4.5, "forward_median_ms": 1.5, "backward_median_ms": 4.5,
               "repeats": 20}]
    best = layers_bench.best_of_rounds(rounds)
    assert (best["forward_ms"], best["forward_gflops"]) == (1.0, 10.0)
    assert (best["backward_ms"], best["backward_gflops"]) == (3.0, 6.0)
    assert best["forward_median_ms"] == 2.0 and best["repeats"] == 30 and best["rounds"] == 2


def test_layer_benchmark_minicnn_columns(tmp_path, capsys):
    layers_bench = load("bench_layers")
    report = layers_bench.main(["--quick", "--impls", "numba,numpy,layer",
                                "--cases", "conv1,pool1,dense1,s2-mnist",
                                "--out-dir", str(tmp_path)])
    rows = {row["name"]: row for row in report["rows"]}
    # Batch 8 (--quick). conv1: 26x26 outputs, 25 filters, 3x3x1 windows; no dL/dx.
    assert rows["conv1"]["flops"] == {"forward": 2 * 8 * 26 * 26 * 25 * 9,
                                      "backward": 2 * 8 * 26 * 26 * 25 * 9}
    # s2-mnist: 'same' with stride 2 -> ceil(28 / 2) = 14; backward = kernel + input gradient.
    assert rows["s2-mnist"]["description"].endswith("28x28x1 -> 14x14x32")
    assert rows["s2-mnist"]["flops"]["backward"] == 2 * rows["s2-mnist"]["flops"]["forward"]
    assert rows["pool1"]["flops"] == {"forward": 8 * 13 * 13 * 25 * 4, "backward": 8 * 13 * 13 * 25}
    assert set(rows["conv1"]["results"]) == {"numba", "numpy", "layer"}
    assert set(rows["dense1"]["results"]) == {"layer"}  # dense has no op of its own
    entry = rows["conv1"]["results"]["numba"]
    assert entry["forward_gflops"] == pytest.approx(
        rows["conv1"]["flops"]["forward"] / entry["forward_ms"] / 1e6)
    assert entry["forward_ms"] <= entry["forward_median_ms"] and entry["repeats"] >= 2
    assert entry["rounds"] == 1 and report["config"]["rounds"] == 1  # --quick: one round
    out = capsys.readouterr().out
    assert "| conv1 | conv 3x3/1 valid + relu, no dx, 28x28x1 -> 26x26x25 |" in out
    saved = json.loads(next(tmp_path.glob("*-layers-quick.json")).read_text())
    assert saved["rows"][0]["results"]["numba"]["forward_ms"] == entry["forward_ms"]


# ----------------------------------------------------------------------------- bench_kernels


def test_kernel_benchmark_times_every_prototype_against_the_current_path(tmp_path, capsys):
    kernels_bench = load("bench_kernels")
    report = kernels_bench.main(["--quick", "--out-dir", str(tmp_path)])
    rows = {row["conv"]: row for row in report["rows"]}
    assert set(rows) == {"conv1", "conv2", "conv3"} and rows["conv2"]["batch"] == 16
    assert rows["conv1"]["new"] == "direct" and rows["conv2"]["new"] == "winograd"
    # 16 x 11 x 11 outputs x 64 filters x 225 (3x3x25) multiply-adds, 2 FLOPs each.
    assert rows["conv2"]["flops_forward"] == 2 * 16 * 11 * 11 * 64 * 9 * 25
    for row in rows.values():
        current, new = row["results"]["current"], row["results"][row["new"]]
        for phase in ("forward", "forward_conv", "dkernel"):
            assert 0 < current[phase]["min_ms"] <= current[phase]["median_ms"]
            assert 0 < new[phase]["min_ms"] <= new[phase]["median_ms"]
            assert new[phase]["calls"] == 3  # --quick: one round of three calls
    assert "step: 16 products V@U" in rows["conv2"]["results"]["winograd"]
    out = capsys.readouterr().out
    assert "| conv2 | 16 | forward: conv + bias + ReLU |" in out
    assert "Winograd, step by step" in out
    saved = json.loads(next(tmp_path.glob("*-kernels-quick.json")).read_text())
    assert saved["config"]["blas_threads"] == 1 and len(saved["rows"]) == 3
