"""A benchmark's report as a plain-text table."""


def render(report: dict) -> str:
  """A plain-text table of a report."""
  m = report["machine"]
  lines = [f"ctdist.bench {report['benchmark']} on {m['cpu']} ({m['cpu_cores']} cores), "
           f"GPUs {m['gpus'] or 'none'}, TPU {m['tpu']}, TensorFlow {m['tensorflow']}",
           "config: " + ", ".join(f"{k}={v}" for k, v in report["config"].items())]
  for r in report["results"]:
    lines.append("  " + ", ".join(
        f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()))
  for k, v in report.get("ratios", {}).items():
    lines.append(f"  {k}: {v:.0%}" if k.endswith("_share_of_step") else f"  {k}: {v:.2f}x")
  if report.get("notes"):
    lines.append(f"note: {report['notes']}")
  return "\n".join(lines)
