#!/usr/bin/env node
// aec-decode MODELS_DIR IN.aec OUT.png|OUT.rgba: one stream to a PNG or raw RGBA bytes.
import { rename, readFile, writeFile } from 'node:fs/promises';
import { nodeDecoder, png } from '../src/node.js';

const [modelsDir, input, output] = process.argv.slice(2);
if (!output) {
  console.error('usage: aec-decode MODELS_DIR IN.aec OUT.png|OUT.rgba');
  process.exit(2);
}
try {
  const decoder = nodeDecoder(modelsDir);
  const img = await decoder.decode(await readFile(input));
  const body = output.endsWith('.rgba') ? Buffer.from(img.rgba.buffer)
    : png(img.width, img.height, img.channels, img.pixels);
  await writeFile(`${output}.part`, body);
  await rename(`${output}.part`, output); // whole or not at all
  console.log(`${input}: ${img.width}x${img.height}, ${img.channels} channel(s) -> ${output}`);
} catch (e) {
  console.error(`Error: ${input}: ${e.name === 'Error' ? '' : `${e.name}: `}${e.message}`);
  process.exit(1);
}
