"""The seed autoencoders on MNIST: models, recipes, export (torch); trained by the one loop's
task (aecodec.export.tasks.mnist). The IDX reader is the runtime's (aecodec.idx), the figures
and bench are in `aecodec.bench` (mnist_cli, mnist_figures, mnist)."""
