// Output of a one-off command or an HTTP body, cut at a byte cap so that a result always fits
// an answer; remembers whether more came.

export class CappedBuffer {
  readonly #chunks: Buffer[] = [];
  #bytes = 0;
  truncated = false;

  constructor(private readonly bytesMax: number) {}

  push(chunk: Buffer): void {
    const room = this.bytesMax - this.#bytes;
    if (room <= 0) {
      this.truncated = true;
      return;
    }
    const part = chunk.byteLength > room ? chunk.subarray(0, room) : chunk;
    if (part !== chunk) this.truncated = true;
    this.#chunks.push(part);
    this.#bytes += part.byteLength;
  }

  /** True once the cap is reached: later bytes are only counted as truncation. */
  get full(): boolean {
    return this.#bytes >= this.bytesMax;
  }

  text(): string {
    // A cut may split a UTF-8 sequence; the decoder replaces the tail with U+FFFD.
    return Buffer.concat(this.#chunks).toString('utf8');
  }
}
