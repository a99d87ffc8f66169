"""Training tasks for `aecodec.export.loop.fit`: one module per kind of training."""
