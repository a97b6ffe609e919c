"""The runtime layer under training, evaluation, prediction and export.

Device choice, autocast, moving batches, seeding, process groups, model wrappers,
checkpoints and building a model from a checkpoint live here, so ``train/`` and
``evaluate/`` both build on this package and neither imports the other's internals.
"""
