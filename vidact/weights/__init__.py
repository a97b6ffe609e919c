"""Where weights come from: the zoo of published checkpoints, reading PySlowFast, PyTorchVideo and
Caffe2 files, mapping their keys onto vidact's models, and ``--pretrained`` / ``models convert``."""
