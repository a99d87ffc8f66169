"""An exact arithmetic coder with a byte-granular end, for the compact profile's tiny payloads.

constriction's coders flush their state as whole 32-bit words: on a 28x28 digit whose latents
hold ~60 bits, that end costs ~3 bytes, as much as the compact header. Here the whole message
is one interval of [0, 1) computed exactly with Python integers, and the stream is the shortest
byte string b (big-endian, read as the fraction b / 256**n, missing bytes being zero) that lies
in it: at most ceil(information / 8) bytes, so less than a byte over the information content.
Exact integers cost O(n^2) in the message length: meant for payloads of tens of symbols
(fixed-size models), not photos.

Each coding step is (cumulative frequency, frequency, precision bits p): the step splits the
current interval into 2**p equal parts and keeps [cum, cum + freq) of them.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence

from .errors import CorruptStreamError

PRECISION = 24  # bits of every table's integer frequencies


def quantize(probs: Sequence[float], precision: int = PRECISION) -> list[int]:
    """Integer frequencies summing to 2**precision, each >= 1: floor(p * (2**precision - n)) + 1
    of the probabilities normalised with an exactly rounded sum, the remainder added to the
    first largest entry. Plain IEEE double operations: the same integers on every machine."""
    import math

    n = len(probs)
    total = 1 << precision
    if not 1 <= n <= total // 2:
        raise ValueError("alphabet size out of range for the precision")
    s = math.fsum(float(p) for p in probs)
    if not s > 0 or not math.isfinite(s):
        raise ValueError("probabilities must have a positive finite sum")
    scale = float(total - n)
    freqs = [int(math.floor(float(p) / s * scale)) + 1 for p in probs]
    rest = total - sum(freqs)
    if rest < 0:  # rounding: take back from the largest (never below 1)
        raise ValueError("probabilities quantize over the total")
    freqs[max(range(n), key=freqs.__getitem__)] += rest
    return freqs


class IntModel:
    """A quantized categorical: frequencies and their cumulative sums, for encode and decode."""

    def __init__(self, freqs: Sequence[int], precision: int = PRECISION):
        if sum(freqs) != 1 << precision or min(freqs) < 1:
            raise ValueError("frequencies must be >= 1 and sum to 2**precision")
        self.precision = precision
        self.freqs = list(freqs)
        self.cum = [0]
        for f in self.freqs:
            self.cum.append(self.cum[-1] + f)

    @classmethod
    def from_probs(cls, probs: Sequence[float], precision: int = PRECISION) -> IntModel:
        return cls(quantize(probs, precision), precision)

    def step(self, symbol: int) -> tuple[int, int, int]:
        return self.cum[symbol], self.freqs[symbol], self.precision

    def find(self, u: int) -> int:
        """The symbol whose interval [cum, cum + freq) holds u (0 <= u < 2**precision)."""
        return bisect_right(self.cum, u) - 1


UNIFORM_BIT = IntModel([1, 1], 1)


def encode(steps: Iterable[tuple[int, int, int]]) -> bytes:
    """The shortest byte string inside the interval that the steps select."""
    low, width, scale = 0, 1, 0  # interval [low, low + width) / 2**scale
    for cum, freq, p in steps:
        low = (low << p) + cum * width
        width *= freq
        scale += p
    # fewest bytes n such that some b / 256**n lies in the interval
    n = 0
    while True:
        shift = scale - 8 * n
        if shift <= 0:
            b = low << -shift
            break
        b = -(-low >> shift)  # ceil(low / 2**shift)
        if (b << shift) < low + width:
            break
        n += 1
    return b.to_bytes(n, "big") if n else b""


class Decoder:
    """Decodes the steps of `encode` one model at a time; the caller picks each model."""

    def __init__(self, data: bytes):
        self.value = int.from_bytes(data, "big")
        self.bits = 8 * len(data)  # value / 2**bits is the coded fraction
        self.low, self.width, self.scale = 0, 1, 0

    def decode(self, model: IntModel) -> int:
        p = model.precision
        # u = floor((value / 2**bits * 2**scale - low) * 2**p / width)
        num = (self.value << (self.scale + p)) - (self.low << (p + self.bits))
        u = num // (self.width << self.bits)
        if not 0 <= u < 1 << p:  # cannot happen for any bytes; kept as a guard
            raise CorruptStreamError("invalid arithmetic-coded data")
        s = model.find(u)
        cum, freq, _ = model.step(s)
        self.low = (self.low << p) + cum * self.width
        self.width *= freq
        self.scale += p
        return s

    def decode_many(self, model: IntModel, count: int) -> list[int]:
        return [self.decode(model) for _ in range(count)]


def check_canonical(data: bytes, reencode: Callable[[], bytes]) -> None:
    """Refuse any byte string other than the one the encoder writes for the decoded message
    (e.g. a trailing byte added or changed in a way the decoded symbols do not notice)."""
    if reencode() != bytes(data):
        raise CorruptStreamError("section is not the canonical coding of its symbols")
