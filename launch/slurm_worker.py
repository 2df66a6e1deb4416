"""Runs one ctdist.train worker of a Slurm job step: TF_CONFIG from Slurm's environment.

Used by launch/slurm.sbatch as `srun python -m launch.slurm_worker -- TRAIN_FLAGS...`.
The step's nodes (SLURM_STEP_NODELIST), tasks per node (SLURM_STEP_TASKS_PER_NODE) and
this task's rank (SLURM_PROCID) become TF_CONFIG: task i of a node listens on port
--port + i, ranks in node order as Slurm's block distribution gives them. (TensorFlow's
SlurmClusterResolver places tasks by GPU count: on a CPU node, or with no nvidia-smi, it
gives no task at all.) The worker then runs ctdist.train --strategy=multi_worker.
"""

import json
import os
import sys

from absl import app
from absl import flags

_NEEDED = ("SLURM_PROCID", "SLURM_STEP_NODELIST", "SLURM_STEP_TASKS_PER_NODE")


def tf_config_from_slurm(environ, port_base: int = 8888) -> str:
  """TF_CONFIG for the Slurm task whose variables are `environ`."""
  from tensorflow.python.distribute.cluster_resolver import slurm_cluster_resolver as slurm  # pylint: disable=g-import-not-at-top
  hosts = slurm.expand_hostlist(environ["SLURM_STEP_NODELIST"])
  per_node = slurm.expand_tasks_per_node(environ["SLURM_STEP_TASKS_PER_NODE"])
  workers = [f"{host}:{port_base + i}" for host, n in zip(hosts, per_node) for i in range(n)]
  rank = int(environ["SLURM_PROCID"])
  if not 0 <= rank < len(workers):
    raise ValueError(f"SLURM_PROCID={rank} but the step has {len(workers)} task(s)")
  return json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": rank}})


def main(argv) -> None:
  """absl keeps what follows `--` in argv: the flags for ctdist.train."""
  missing = [name for name in _NEEDED if name not in os.environ]
  if missing:
    print(f"error: {', '.join(missing)} not set: run this under srun inside a Slurm job "
          "(sbatch launch/slurm.sbatch); for one machine use python -m ctdist.train or "
          "python -m launch.local_cluster", file=sys.stderr)
    sys.exit(2)
  os.environ["TF_CONFIG"] = tf_config_from_slurm(os.environ, flags.FLAGS.port)
  # One line per task in the job's log: which cluster this task joined, and as which.
  print(f"slurm task {os.environ['SLURM_PROCID']}: TF_CONFIG={os.environ['TF_CONFIG']}",
        file=sys.stderr, flush=True)
  os.execv(sys.executable, [sys.executable, "-m", "ctdist.train",
                            "--strategy=multi_worker", *argv[1:]])


if __name__ == "__main__":
  flags.DEFINE_integer("port", int(os.environ.get("CTDIST_PORT", "8888")),
                       "First port of the workers' gRPC servers (default: $CTDIST_PORT "
                       "or 8888).")
  app.run(main)
