"""Benchmark smoke tests: every sub-benchmark runs and reports every field. No speed asserted."""

import json
import pathlib
import subprocess
import sys

import pytest

from ctdist import bench
from ctdist import bench_lib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _opts(tmp_path, data_dir, **kw):
  base = dict(data_dir=data_dir, tmp=str(tmp_path), dataset="tfds_ctscan/kaggle",
              image_size=32, batch_size=4, strategy="cpu", precision="float32",
              phases=("head", "finetune"), finetune_layers=5, steps=2, warmup=1,
              repeats=1)
  return bench_lib.BenchOptions(**{**base, **kw})


def _check(report):
  text = bench_lib.render(report)
  assert report["machine"]["tensorflow"] and report["machine"]["cpu_cores"] >= 1
  assert report["results"] and "config" in report
  json.dumps(report)
  return text


def test_input_compares_pipeline_with_notebook_generator(tmp_path, kaggle_dir):
  # `Data/` itself, as the builder accepts it (it once looked for Data/Data/train).
  result = bench_lib.bench_input(_opts(tmp_path, str(tmp_path / "tfds")),
                                 str(kaggle_dir / "Data"), 1)
  names = [r["name"] for r in result["results"]]
  assert any("ImageDataGenerator" in n for n in names)
  assert all(r["images_per_sec"] > 0 for r in result["results"])
  assert set(result["ratios"]) == {"steady_vs_notebook", "first_vs_notebook"}
  _check({"benchmark": "input", "machine": bench.machine(), **result})


def test_step_reports_pipeline_constant_and_input_bound(tmp_path, small_data_dir):
  result = bench_lib.bench_step(_opts(tmp_path, small_data_dir))
  assert [r["phase"] for r in result["results"]] == ["head", "finetune"]
  for r in result["results"]:
    for key in ("pipeline_images_per_sec", "constant_batch_images_per_sec",
                "pipeline_vs_constant", "input_bound_fraction"):
      assert r[key] >= 0, key
  _check({"benchmark": "step", "machine": bench.machine(), **result})


@pytest.mark.parametrize("key,values", [("precision", ["float32", "mixed_bfloat16"]),
                                        ("jit_compile", [False, True])])
def test_variants_report_both_or_the_reason(tmp_path, small_data_dir, key, values):
  result = bench_lib.bench_variants(_opts(tmp_path, small_data_dir, phases=("head",)),
                                    key, values)
  assert len(result["results"]) == 2
  for r in result["results"]:
    if key == "precision":  # both precisions must run here; XLA may be unsupported
      assert "error" not in r, r
    assert "error" in r or r["pipeline_images_per_sec"] > 0


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


def test_cli_writes_json(tmp_path, small_data_dir):
  out = tmp_path / "step.json"
  proc = subprocess.run(
      [sys.executable, "-m", "ctdist.bench", "step", "--dataset=tfds_ctscan/kaggle",
       f"--data_dir={small_data_dir}", "--image_size=32", "--batch_size=4", "--steps=2",
       "--warmup=1", "--repeats=1", "--strategy=cpu", "--phases=head", f"--json={out}"],
      cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  report = json.loads(out.read_text())
  assert report["benchmark"] == "step" and report["results"][0]["phase"] == "head"
  assert "ctdist.bench step on" in proc.stdout
