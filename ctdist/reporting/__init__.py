"""report.html: one self-contained page of a training run or a cross-validation folder."""
