"""Table-driven entropy coding over constriction's ANS coder.

A table set holds T discrete distributions (float64 pmfs from tables.npz). Each symbol names the
table that codes it; symbols are grouped by table and every group is coded with one
`Categorical` model, which is what makes coding ~300k symbols take milliseconds. The tables are
data, and constriction turns them into the same integer model on every machine.

Every table gets one extra symbol, the escape, whose probability is the mass the row leaves out
(at least ESCAPE_MIN). A value outside a table's range is coded as the escape followed by a
bypass code (side + Elias-gamma exponent in one fixed categorical, then uniform mantissa bits),
so any integer below 2**31 in magnitude codes exactly and nothing is clipped.

Decode order of one section: the groups, table 0 first; then one head symbol per escape; then
the escapes' mantissa bits, most significant first. ANS is a stack, so encoding runs backwards.
"""

from __future__ import annotations

from collections.abc import Mapping

import constriction
import numpy as np

from . import bytecoder
from .errors import AecodecError, CorruptStreamError, ModelError

ESCAPE_MIN = 2.0**-16  # floor of a table's escape probability
MAX_EXP = 31  # Elias-gamma exponents 0..31: bypass values below 2**32
MAX_ABS = 2**31 - 1  # largest symbol magnitude the encoder accepts
_MIN_PROB = 2.0**-24  # constriction's smallest probability; bounds the estimate's cost
_HEAD_PROBS = np.concatenate([2.0 ** -(np.arange(MAX_EXP + 1) + 2)] * 2)  # side, exponent

_HEAD_MODEL = bytecoder.IntModel.from_probs(_HEAD_PROBS)

_model = constriction.stream.model
_stack = constriction.stream.stack


class TableSet:
    """T categorical tables with escapes, ready to code symbols grouped by table."""

    def __init__(self, pmf: np.ndarray, lengths: np.ndarray, offsets: np.ndarray):
        pmf = np.asarray(pmf, np.float64)
        lengths = np.asarray(lengths, np.int64).reshape(-1)
        offsets = np.asarray(offsets, np.int64).reshape(-1)
        if pmf.ndim != 2 or len(lengths) != len(pmf) or len(offsets) != len(pmf):
            raise ModelError("table set: pmf must be [T, L] with len and offset of length T")
        if np.any(lengths < 1) or np.any(lengths > pmf.shape[1]):
            raise ModelError("table set: every row needs 1..L symbols")
        if not np.all(np.isfinite(pmf)) or np.any(pmf < 0):
            raise ModelError("table set: probabilities must be finite and non-negative")
        self.lengths = lengths
        self.offsets = offsets
        t, width = len(pmf), pmf.shape[1] + 1
        self.cost = np.zeros((t, width))  # bits per alphabet entry, for estimates
        self.min_bits = np.zeros(t)  # a floor on any symbol's code length under each table
        self._models = []
        self._probs = []  # escape included, for the byte coder's integer models
        for i in range(t):
            n = int(lengths[i])
            p = pmf[i, :n]
            probs = np.append(p, max(1.0 - p.sum(), ESCAPE_MIN))
            probs = probs / probs.sum()
            self.cost[i, : n + 1] = -np.log2(np.maximum(probs, _MIN_PROB))
            # the coder's fixed-point probabilities can exceed the float ones by a unit each
            self.min_bits[i] = max(0.0, -np.log2(min(1.0, probs.max() + (n + 1) * 2.0**-23)))
            self._models.append(_model.Categorical(probs, perfect=False))
            self._probs.append(probs)
        self._head = _model.Categorical(_HEAD_PROBS, perfect=False)
        self._bit = _model.Uniform(2)

    @classmethod
    def from_npz(cls, tables: Mapping[str, np.ndarray], name: str) -> TableSet:
        try:
            return cls(tables[f"{name}_pmf"], tables[f"{name}_len"], tables[f"{name}_offset"])
        except KeyError as e:
            raise ModelError(f"tables.npz lacks table set '{name}' ({e})") from None

    def __len__(self) -> int:
        return len(self.lengths)

    # -- helpers --------------------------------------------------------------------------

    def _check_tables(self, tables: np.ndarray) -> np.ndarray:
        """Flat integer table indices, in range (kept in their own small dtype: less memory)."""
        tables = np.asarray(tables).reshape(-1)
        if tables.dtype.kind not in "iu":
            tables = tables.astype(np.int64)
        if tables.size and (tables.min() < 0 or tables.max() >= len(self)):
            raise CorruptStreamError("table index out of range")
        return tables

    def least_bits(self, counts: np.ndarray) -> float:
        """A floor on the code length in bits of `counts[i]` symbols of each table i, whatever
        the symbols: a section shorter than this cannot hold them."""
        return float(np.asarray(counts, np.float64) @ self.min_bits)

    def _split(self, symbols: np.ndarray, tables: np.ndarray):
        """Alphabet indices (escape = len), group order, and the escapes' bypass fields."""
        values = np.asarray(symbols).reshape(-1).astype(np.int64)
        tables = self._check_tables(tables)
        if values.shape != tables.shape:
            raise ValueError("symbols and table indices differ in size")
        if values.size and np.abs(values).max() > MAX_ABS:
            raise AecodecError("a latent value is out of range: the model output is implausible")
        order = _group_order(tables)
        v, t = values[order], tables[order]
        lo, n = self.offsets[t], self.lengths[t]
        a = v - lo
        esc = (a < 0) | (a >= n)
        a[esc] = n[esc]
        above = v[esc] >= lo[esc] + n[esc]
        d = np.where(above, v[esc] - lo[esc] - n[esc], lo[esc] - 1 - v[esc]) + 1  # >= 1
        exp = np.floor(np.log2(d)).astype(np.int64)
        exp += (d >> exp) >= 2  # guard float rounding near powers of two
        exp -= (d >> exp) < 1
        return t, a, above, exp, d - (1 << exp)

    # -- coding ---------------------------------------------------------------------------

    def encode(self, symbols: np.ndarray, tables: np.ndarray) -> bytes:
        """Code integer symbols, each with its table; returns the ANS words, trailing zeros cut."""
        coder = _stack.AnsCoder()
        self.encode_into(coder, symbols, tables)
        return finish(coder)

    def encode_into(self, coder, symbols: np.ndarray, tables: np.ndarray) -> None:
        """Push one group of symbols onto an ANS coder; groups decode in the reverse order of
        pushing (several groups in one section: a context model's decoding steps)."""
        t, a, above, exp, mant = self._split(symbols, tables)
        bits = _mantissa_bits(exp, mant)
        if bits.size:
            coder.encode_reverse(bits.astype(np.int32), self._bit)
        if exp.size:
            heads = above.astype(np.int64) * (MAX_EXP + 1) + exp
            coder.encode_reverse(heads.astype(np.int32), self._head)
        counts = np.bincount(t, minlength=len(self))
        ends = np.cumsum(counts)
        for i in reversed(np.flatnonzero(counts)):
            group = a[ends[i] - counts[i] : ends[i]].astype(np.int32)
            coder.encode_reverse(group, self._models[i])

    def decode(self, data: bytes, tables: np.ndarray) -> np.ndarray:
        """Inverse of `encode` (int32 symbols); the data must be consumed exactly.

        Refused before any decoding (CorruptStreamError): data shorter than the least code
        length of that many symbols, so a stream that declares a huge image but carries a few
        bytes costs nothing. Memory: about 16 bytes per symbol besides `tables`."""
        tables = self._check_tables(tables)
        if data and data[-1] == 0:
            raise CorruptStreamError("section does not end in a non-zero byte")
        counts = _counts(tables, len(self))
        self.check_room(data, counts)
        coder = open_coder(data)
        out = self.decode_from(coder, tables, counts)
        if not coder.is_empty():
            raise CorruptStreamError("section has data left over after decoding")
        return out

    def check_stream_room(self, sections: list[bytes], counts: np.ndarray) -> None:
        """Refuse sections that together are too short for `counts[i]` symbols of each table
        i, the coder's slack counted once for the stream, not once per section: many tiny
        sections cannot add up to an image their bytes could never have coded."""
        if 8 * sum(len(s) for s in sections) + 128 < 0.99 * self.least_bits(counts):
            raise CorruptStreamError(
                "sections are too short for the image size the header declares")

    def check_room(self, data: bytes, counts: np.ndarray) -> None:
        """Refuse data too short to hold `counts[i]` symbols of each table i."""
        # ANS words carry the information plus at most the coder's 64-bit state
        if 8 * len(data) + 64 < 0.99 * self.least_bits(counts) - 64:
            raise CorruptStreamError(
                "section is too short for the image size its header declares")

    def decode_from(self, coder, tables: np.ndarray,
                    counts: np.ndarray | None = None) -> np.ndarray:
        """Pop one group of symbols (see `encode_into`) from a coder made by `open_coder`."""
        tables = self._check_tables(tables)
        if counts is None:
            counts = _counts(tables, len(self))
        try:
            a = np.empty(tables.size, np.int32)  # alphabet indices, then values, by group
            esc_parts, groups = [], np.flatnonzero(counts)
            ends = np.cumsum(counts)
            for i in groups:
                seg = a[ends[i] - counts[i] : ends[i]]
                seg[:] = coder.decode(self._models[i], int(counts[i]))
                esc_parts.append(np.flatnonzero(seg == self.lengths[i]) + (ends[i] - counts[i]))
                seg += np.int32(self.offsets[i])
            order = _group_order(tables)
            esc = np.concatenate(esc_parts) if esc_parts else np.zeros(0, np.int64)
            if esc.size:
                t = tables[order[esc]]
                a[esc] = self._escaped(coder, self.offsets[t], self.lengths[t])
        except AecodecError:
            raise
        except Exception as e:  # constriction reports bad data as ValueError and friends
            raise CorruptStreamError(f"invalid entropy-coded data ({e})") from None
        out = np.empty_like(a)
        out[order] = a
        return out

    def _escaped(self, coder, lo: np.ndarray, n: np.ndarray) -> np.ndarray:
        """The values of escaped symbols of tables with offsets `lo` and lengths `n`: one head
        each (side, exponent), then their mantissa bits (decode order of a group)."""
        heads = coder.decode(self._head, lo.size).astype(np.int64)
        above, exp = heads // (MAX_EXP + 1), heads % (MAX_EXP + 1)
        bits = coder.decode(self._bit, int(exp.sum())) if exp.sum() else np.zeros(0)
        d = (1 << exp) + _mantissa_values(exp, bits)
        v = np.where(above == 1, lo + n + d - 1, lo - d)
        if np.abs(v).max() > MAX_ABS:  # the encoder never writes these
            raise CorruptStreamError("escaped latent value out of range")
        return v

    def pop(self, coder, tables: np.ndarray) -> np.ndarray:
        """`decode_from` for many small groups: the same symbols in the same order, one
        constriction call per group and the escapes found in one vectorised pass (the overfit
        family pops ~1,800 wavefronts of ~60 groups each per image)."""
        tables = self._check_tables(tables)
        try:
            order = _group_order(tables)
            t = tables[order]
            cuts = np.flatnonzero(t[1:] != t[:-1]) + 1
            starts = np.concatenate([[0], cuts]).tolist()
            ends = np.concatenate([cuts, [t.size]]).tolist()
            a = np.empty(t.size, np.int64)
            models = self._models
            for s0, s1, i in zip(starts, ends, t[starts].tolist(), strict=True):
                a[s0:s1] = coder.decode(models[i], s1 - s0)
            lo, n = self.offsets[t], self.lengths[t]
            esc = np.flatnonzero(a == n)
            v = a + lo
            if esc.size:
                v[esc] = self._escaped(coder, lo[esc], n[esc])
        except AecodecError:
            raise
        except Exception as e:  # constriction reports bad data as ValueError and friends
            raise CorruptStreamError(f"invalid entropy-coded data ({e})") from None
        out = np.empty_like(v)
        out[order] = v
        return out

    # -- byte coder (compact profile) -----------------------------------------------------

    def _int_model(self, i: int) -> bytecoder.IntModel:
        if self._int_models is None:
            self._int_models = [None] * len(self)
        if self._int_models[i] is None:
            self._int_models[i] = bytecoder.IntModel.from_probs(self._probs[i])
        return self._int_models[i]

    _int_models: list | None = None

    def encode_bytes(self, symbols: np.ndarray, tables: np.ndarray) -> bytes:
        """The same symbol sequence as `encode` (groups, heads, mantissa bits), coded with the
        exact arithmetic coder of `bytecoder`: byte-granular end, for small payloads."""
        t, a, above, exp, mant = self._split(symbols, tables)
        steps = [self._int_model(int(i)).step(int(s)) for i, s in zip(t, a, strict=True)]
        heads = above.astype(np.int64) * (MAX_EXP + 1) + exp
        steps += [_HEAD_MODEL.step(int(h)) for h in heads]
        steps += [bytecoder.UNIFORM_BIT.step(int(b)) for b in _mantissa_bits(exp, mant)]
        return bytecoder.encode(steps)

    def decode_bytes(self, data: bytes, tables: np.ndarray) -> np.ndarray:
        """Inverse of `encode_bytes`; refuses any data but the canonical coding."""
        tables = self._check_tables(tables)
        if 8 * len(data) > tables.size * (2 * bytecoder.PRECISION + MAX_EXP) + 8:
            raise CorruptStreamError("section is longer than any coding of its symbols")
        order = _group_order(tables)
        t = tables[order]
        dec = bytecoder.Decoder(bytes(data))
        a = np.array([dec.decode(self._int_model(int(i))) for i in t], np.int64)
        lo, n = self.offsets[t], self.lengths[t]
        esc = np.flatnonzero(a == n)
        v = a + lo
        if esc.size:
            heads = np.array(dec.decode_many(_HEAD_MODEL, int(esc.size)), np.int64)
            above, exp = heads // (MAX_EXP + 1), heads % (MAX_EXP + 1)
            bits = np.array(dec.decode_many(bytecoder.UNIFORM_BIT, int(exp.sum())), np.int64)
            d = (1 << exp) + _mantissa_values(exp, bits)
            v[esc] = np.where(above == 1, lo[esc] + n[esc] + d - 1, lo[esc] - d)
        out = np.empty_like(v)
        out[order] = v
        if np.abs(out).max(initial=0) > MAX_ABS:
            raise CorruptStreamError("section decodes to a latent out of range")
        bytecoder.check_canonical(data, lambda: self.encode_bytes(out, tables))
        return out

    def symbol_bits(self, symbols: np.ndarray, tables: np.ndarray) -> np.ndarray:
        """Each symbol's information content (bits, escape bypass included), in input order."""
        t, a, above, exp, _ = self._split(symbols, tables)
        head_bits = -np.log2(_HEAD_PROBS / _HEAD_PROBS.sum())
        heads = above.astype(np.int64) * (MAX_EXP + 1) + exp
        esc_bits = np.zeros(t.size)
        esc = np.flatnonzero(a == self.lengths[t])
        esc_bits[esc] = head_bits[heads] + exp
        out = np.empty(t.size)
        out[_group_order(self._check_tables(tables))] = self.cost[t, a] + esc_bits
        return out

    def estimate_bits(self, symbols: np.ndarray, tables: np.ndarray) -> float:
        """The information content of the symbols under the float tables (no coder overhead)."""
        t, a, above, exp, _ = self._split(symbols, tables)
        head_bits = -np.log2(_HEAD_PROBS / _HEAD_PROBS.sum())
        heads = above.astype(np.int64) * (MAX_EXP + 1) + exp
        return float(self.cost[t, a].sum() + head_bits[heads].sum() + exp.sum())


def new_coder():
    """An empty ANS coder for `TableSet.encode_into`."""
    return _stack.AnsCoder()


def finish(coder) -> bytes:
    """The section bytes of an encoding coder: its words, trailing zero bytes cut."""
    return coder.get_compressed().astype("<u4").tobytes().rstrip(b"\0")


def open_coder(data: bytes):
    """A decoding coder over one section (inverse of `finish`)."""
    if data and data[-1] == 0:
        raise CorruptStreamError("section does not end in a non-zero byte")
    data = bytes(data) + b"\0" * (-len(data) % 4)
    try:
        return _stack.AnsCoder(np.frombuffer(data, "<u4").astype(np.uint32))
    except Exception as e:  # constriction reports bad data as ValueError and friends
        raise CorruptStreamError(f"invalid entropy-coded data ({e})") from None


def _counts(tables: np.ndarray, n: int, chunk: int = 1 << 18) -> np.ndarray:
    """Symbols per table; by chunks, since bincount widens its input to 64 bits."""
    counts = np.zeros(n, np.int64)
    for i in range(0, tables.size, chunk):
        counts += np.bincount(tables[i : i + chunk], minlength=n)
    return counts


def _group_order(tables: np.ndarray) -> np.ndarray:
    """Stable order that groups symbols by table (int16 keys sort by radix: ~5x faster)."""
    keys = tables.astype(np.int16) if len(tables) and tables.max() < 2**15 else tables
    return np.argsort(keys, kind="stable")


def _bit_positions(exp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For the concatenated mantissa bits: which escape each belongs to, and its shift."""
    owner = np.repeat(np.arange(exp.size), exp)
    k = np.arange(owner.size) - np.repeat(np.cumsum(exp) - exp, exp)
    return owner, exp[owner] - 1 - k


def _mantissa_bits(exp: np.ndarray, mant: np.ndarray) -> np.ndarray:
    """The low `exp` bits of each mantissa, concatenated, most significant first."""
    owner, shift = _bit_positions(exp)
    return (mant[owner] >> shift) & 1


def _mantissa_values(exp: np.ndarray, bits: np.ndarray) -> np.ndarray:
    owner, shift = _bit_positions(exp)
    vals = np.zeros(exp.size, np.int64)
    np.add.at(vals, owner, bits.astype(np.int64) << shift)
    return vals
