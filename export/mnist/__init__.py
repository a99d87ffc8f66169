"""The seed autoencoders on MNIST: models, training, export (torch). The torch-free data reader,
figures and bench are in `aecodec.bench` (mnist_data, mnist_figures, mnist)."""
