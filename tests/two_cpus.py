"""`python tests/two_cpus.py [MODULE] FLAGS...`: a ctdist command (ctdist.train unless
MODULE, e.g. ctdist.cv, is given) with the CPU split into two logical devices before
TensorFlow initialises, so --strategy=mirrored has two replicas on a machine without GPUs
(as conftest.py does for the tests run in-process)."""

import runpy
import sys

import tensorflow as tf

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
_module = sys.argv.pop(1) if len(sys.argv) > 1 and sys.argv[1].startswith("ctdist.") \
    else "ctdist.train"
sys.argv = [_module, *sys.argv[1:]]
runpy.run_module(_module, run_name="__main__", alter_sys=True)
