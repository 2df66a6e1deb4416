"""Runs one ctdist.train worker of a Slurm job: TF_CONFIG from Slurm's environment.

Used by launch/slurm.sbatch as `srun python -m launch.slurm_worker -- TRAIN_FLAGS...`.
TensorFlow's SlurmClusterResolver reads SLURM_* variables (nodes, tasks, this task's
rank); the cluster becomes TF_CONFIG and the worker runs --strategy=multi_worker.
"""

import json
import os
import sys

from absl import app
from absl import flags


def tf_config_from_slurm(port_base: int = 8888) -> str:
  """TF_CONFIG for this Slurm task (one task per node)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  resolver = tf.distribute.cluster_resolver.SlurmClusterResolver(
      port_base=port_base, tasks_per_node=1, gpus_per_task=None, auto_set_gpu=False)
  return json.dumps({"cluster": resolver.cluster_spec().as_dict(),
                     "task": {"type": resolver.task_type, "index": resolver.task_id}})


def main(argv) -> None:
  """absl keeps what follows `--` in argv: the flags for ctdist.train."""
  os.environ["TF_CONFIG"] = tf_config_from_slurm(flags.FLAGS.port)
  os.execv(sys.executable, [sys.executable, "-m", "ctdist.train",
                            "--strategy=multi_worker", *argv[1:]])


if __name__ == "__main__":
  flags.DEFINE_integer("port", int(os.environ.get("CTDIST_PORT", "8888")),
                       "First port of the workers' gRPC servers (default: $CTDIST_PORT "
                       "or 8888).")
  app.run(main)
