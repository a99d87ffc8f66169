"""The seed autoencoders on MNIST: models, training, export (torch); data, figures (torch-free)."""
