"""The exceptions aecodec raises.

Every failure a caller can provoke with bad input (a damaged stream, a missing model, an unreadable
or oversized image) surfaces as a subclass of `AecodecError`, never as an IndexError or
struct.error from deep inside, so callers and the CLI can catch one type and show one clear line.
"""

from __future__ import annotations


class AecodecError(Exception):
    """Base class of every error aecodec raises on purpose."""


class CorruptStreamError(AecodecError, OSError):
    """The bytes are not a valid aecodec stream: foreign, truncated or damaged. Also an
    OSError, Pillow's convention for a broken file, so Pillow users catch it as one."""


class ModelError(AecodecError):
    """A model folder is missing files, fails its checksums, or is malformed."""


class UnknownModelError(ModelError):
    """No available model has the requested name or the id a stream asks for."""


class ModelMismatchError(ModelError):
    """A stream was written by a different model than the one given to decode it."""


class ImageTooLargeError(AecodecError):
    """An image (or a stream's declared image) has more pixels than the configured limit."""


class UnreadableImageError(AecodecError):
    """An image file cannot be opened or decoded."""


class UnsupportedImageError(AecodecError):
    """An image array has a shape, dtype or size the model cannot code."""


class LossWarning(UserWarning):
    """Part of an input image cannot be kept (16-bit samples, later frames, a colour mode
    without an 8-bit RGB or gray equivalent, metadata an output format cannot hold): said
    once per image, never silently."""


class RateWarning(UserWarning):
    """A bits-per-pixel target out of the model's reach: one that even the lowest quality
    cannot meet (the stream is over it), or one above what the top quality spends (the stream
    is quality 100, well under it)."""
