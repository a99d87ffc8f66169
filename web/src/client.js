// A page's handle on the decoder worker: decode(bytes) -> Promise of {width, height, rgba, ...}.
export class AecWorker {
  constructor(models, workerUrl = new URL('./worker.js', import.meta.url)) {
    this.models = new URL(models, location.href).href;
    this.worker = new Worker(workerUrl, { type: 'module' });
    this.pending = new Map();
    this.next = 0;
    this.worker.onmessage = ({ data }) => {
      const p = this.pending.get(data.id);
      this.pending.delete(data.id);
      if (data.error) {
        const e = new Error(data.error.message);
        e.name = data.error.name;
        p.reject(e);
      } else p.resolve(data);
    };
  }

  decode(bytes, { maxPixels } = {}) {
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      const copy = new Uint8Array(bytes).slice().buffer;
      this.worker.postMessage({ id, bytes: copy, models: this.models, maxPixels }, [copy]);
    });
  }
}

/** Draw a decoded image on a canvas. */
export function draw(canvas, img) {
  canvas.width = img.width;
  canvas.height = img.height;
  canvas.getContext('2d').putImageData(new ImageData(new Uint8ClampedArray(img.rgba.buffer ?? img.rgba), img.width, img.height), 0, 0);
}
