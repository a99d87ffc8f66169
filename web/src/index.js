export { Decoder, DEFAULT_MAX_PIXELS } from './decoder.js';
export { parse } from './container.js';
export * from './errors.js';
export { powExact, invGainsAt } from './gains.js';
