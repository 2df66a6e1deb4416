"""The errors that are a user's mistake: a command ends on one with one `error:` line and
exit status 2. Any other error is a bug in ctdist and shows its traceback."""

from ctdist.config import shared
from ctdist.data import builders
from ctdist.data import examples
from ctdist.data import plan
from ctdist.data import subsets
from ctdist.model import resnet
from ctdist.model import saved
from ctdist.scoring import evaluation
from ctdist.scoring import predictions
from ctdist.store import options_file
from ctdist.store import run_files
from ctdist.training import strategy
from ctdist.training import state
from tfds_ctscan import layout
from tfds_ctscan import scan
from tfds_ctscan import splitting

# Training a run (ctdist.train, each fold of ctdist.cv).
TRAINING = (builders.DatasetNotBuiltError, builders.UnknownDatasetError,
            builders.UnknownSplitError, plan.BatchSizeError, subsets.SubsetError,
            resnet.WeightsError, strategy.StrategyError, layout.LayoutError,
            scan.UnreadableImagesError, splitting.TooFewImagesError,
            options_file.ResumeError,
            options_file.OptionsFileError, state.DivergedError)
# Reading a trained run (evaluate, calibrate, predict, explain, report).
READING_A_RUN = (shared.RunFolderError, saved.ModelFileError, builders.DatasetNotBuiltError,
                 builders.UnknownDatasetError, builders.UnknownSplitError,
                 evaluation.ClassMismatchError, options_file.NoOptionsError,
                 options_file.OptionsFileError, run_files.RunFileError,
                 run_files.UnfinishedRunError, predictions.NoPredictionsError,
                 predictions.PredictionsFileError, examples.MissingFilesError)
