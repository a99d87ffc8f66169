// The Python decoder's refusals, by the same names (aecodec.errors).
export class AecodecError extends Error {
  constructor(message) { super(message); this.name = this.constructor.name; }
}
export class CorruptStreamError extends AecodecError {}
export class ImageTooLargeError extends AecodecError {}
export class UnknownModelError extends AecodecError {}
export class ModelMismatchError extends AecodecError {}
export class UnsupportedImageError extends AecodecError {}
export class ModelError extends AecodecError {}
// a stream this decoder cannot decode yet (a family or section it does not hold)
export class NotSupportedError extends AecodecError {}
