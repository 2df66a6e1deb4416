"""Benchmark smoke tests: every sub-benchmark runs and reports every field. No speed asserted."""

import json
import pathlib
import subprocess
import sys

import pytest

from ctdist.benchmarks import input_speed
from ctdist.benchmarks import render
from ctdist.benchmarks import steps
from ctdist.config import bench as bench_config
from ctdist.config import flagtree
from ctdist.training import hardware
import forked

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _opts(tmp_path, data_dir, **kw):
  base = dict(data_dir=data_dir, tmp=str(tmp_path), dataset="tfds_ctscan/kaggle",
              image_size=32, batch_size=4, strategy="cpu", precision="float32",
              phases=("head", "finetune"), finetune_layers=5, steps=2, warmup=1,
              repeats=1)
  return flagtree.from_flat(bench_config.BenchOptions, {**base, **kw})


def _check(report):
  """The report is JSON and its rendered table shows every result and ratio."""
  text = render.render(report)
  assert report["machine"]["tensorflow"] and report["machine"]["cpu_cores"] >= 1
  assert report["results"] and "config" in report
  json.dumps(report)
  lines = text.splitlines()
  assert lines[0].startswith(f"ctdist.bench {report['benchmark']} on ")
  for r, line in zip(report["results"], lines[2:]):
    rate = r.get("pipeline_images_per_sec", r.get("images_per_sec"))
    assert f"={rate:.3f}" in line, (r, line)
  for k, v in report.get("ratios", {}).items():  # shares as percentages, ratios as N.NNx
    assert (f"  {k}: {v:.0%}" if k.endswith("_share_of_step") else f"  {k}: {v:.2f}x") in lines
  return text


def test_input_compares_pipeline_with_notebook_generator(tmp_path, kaggle_dir):
  # `Data/` itself, as the builder accepts it (it once looked for Data/Data/train).
  result = input_speed.bench_input(_opts(tmp_path, str(tmp_path / "tfds"),
                                       folder=str(kaggle_dir / "Data"), epochs=1))
  names = [r["name"] for r in result["results"]]
  assert any("ImageDataGenerator" in n for n in names)
  assert all(r["images_per_sec"] > 0 for r in result["results"])
  assert set(result["ratios"]) == {"steady_vs_notebook", "first_vs_notebook"}
  _check({"benchmark": "input", "machine": hardware.machine(), **result})


@pytest.mark.parametrize("key,asked,values", [
    # "mixed" is the device's mixed policy: bfloat16 on a CPU.
    ("precision", ["float32", "mixed"], ["float32", "mixed_bfloat16"]),
    ("jit_compile", [False, True], [False, True]),
    ("augmentation", [False, True], [False, True])])
def test_variants_report_both_or_the_reason(tmp_path, small_data_dir, key, asked, values):
  result = steps.bench_variants(_opts(tmp_path, small_data_dir, phases=("head",)),
                                    key, asked)
  # Both run on a CPU: bfloat16 kernels exist, and XLA compiles the step (its one max
  # pool is SlicedMaxPool), so neither may come back as an error.
  assert [r[key] for r in result["results"]] == values
  for r in result["results"]:
    assert "error" not in r, r
    assert r["pipeline_images_per_sec"] > 0
  ratio = result["ratios"][f"head_{values[1]}_vs_{values[0]}"]
  assert ratio == pytest.approx(result["results"][1]["pipeline_images_per_sec"]
                                / result["results"][0]["pipeline_images_per_sec"])
  if key == "augmentation":  # the share of the step's time augmentation takes
    assert result["ratios"]["head_augmentation_share_of_step"] == pytest.approx(1 - ratio)
  _check({"benchmark": "variants", "machine": hardware.machine(), **result})


def test_scaling_cli_one_vs_two_replicas(tmp_path, small_data_dir):
  # In a process of its own: several MirroredStrategy objects running collectives in
  # one process can collide on collective keys, and the CLI splits the CPU itself.
  out = tmp_path / "scaling.json"
  proc = subprocess.run(
      [sys.executable, "-m", "ctdist.bench", "scaling", "--replicas=2",
       "--dataset=tfds_ctscan/kaggle", f"--data_dir={small_data_dir}", "--image_size=32",
       "--batch_size=2", "--steps=2", "--warmup=1", "--repeats=1", "--phases=head",
       f"--json={out}"], cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  report = json.loads(out.read_text())
  assert [r["replicas"] for r in report["results"]] == [1, 2]
  assert "head_speedup" in report["ratios"] and "head_efficiency" in report["ratios"]


def test_step_cli_reports_pipeline_constant_and_input_bound(tmp_path, small_data_dir):
  out = tmp_path / "step.json"
  proc = forked.run(
      "ctdist.bench", "step", "--dataset=tfds_ctscan/kaggle", f"--data_dir={small_data_dir}",
      "--image_size=32", "--batch_size=4", "--steps=2", "--warmup=1", "--repeats=1",
      "--strategy=cpu", "--precision=float32", "--phases=head,finetune",
      "--finetune_layers=5", f"--json={out}", timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  report = json.loads(out.read_text())
  assert report["benchmark"] == "step"
  assert [r["phase"] for r in report["results"]] == ["head", "finetune"]
  for r in report["results"]:
    assert r["pipeline_images_per_sec"] > 0 and r["constant_batch_images_per_sec"] > 0
    assert r["pipeline_vs_constant"] == pytest.approx(
        r["pipeline_images_per_sec"] / r["constant_batch_images_per_sec"])
    # The share of step time lost to input: none when the pipeline keeps up.
    assert 0 <= r["input_bound_fraction"] < 1
    assert (r["input_bound_fraction"] > 0) == (r["pipeline_vs_constant"] < 1)
  assert _check(report) in proc.stdout  # the table printed is the JSON's


def test_build_times_the_tfds_build(tmp_path, kaggle_dir):
  result = input_speed.bench_build(_opts(tmp_path, None, folder=str(kaggle_dir), repeats=1))
  # Every image of the fixture folder becomes an example (its splits' counts).
  on_disk = sum(1 for p in (kaggle_dir / "Data").rglob("*") if p.is_file())
  assert result["config"]["images"] == on_disk
  assert result["results"][0]["images_per_sec"] > 0
  _check({"benchmark": "build", "machine": hardware.machine(), **result})


def test_a_failing_variant_is_shown_and_fails_the_command(tmp_path):
  # The XLA variant fails (planted); the other is measured (a stand-in row): the table
  # shows both, and the exit status says the comparison is incomplete.
  script = f"""
import runpy, sys
from ctdist.benchmarks import steps
def measure(opts, strategy, precision, jit, **kw):
  if jit:
    raise RuntimeError("planted: XLA unavailable")
  return [{{"phase": "head", "precision": precision, "jit_compile": jit,
           "pipeline_images_per_sec": 10.0}}]
steps._measure = measure
sys.argv = ["ctdist.bench", "xla", "--strategy=cpu", "--tmp={tmp_path}"]
runpy.run_module("ctdist.bench", run_name="__main__")
"""
  done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                        text=True, timeout=300)
  assert done.returncode == 1, done.stderr[-3000:]
  assert "jit_compile=True, error=RuntimeError: planted: XLA unavailable" in done.stdout
  assert "pipeline_images_per_sec=10.000" in done.stdout
  assert done.stderr.strip().splitlines()[-1].startswith(
      "error: 1 of 2 variant(s) failed (the rows marked error)")
