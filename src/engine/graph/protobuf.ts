/**
 * A minimal protocol-buffers writer: just the wire types ONNX's ModelProto uses
 * (varint, 64-bit, length-delimited, 32-bit). Messages are built bottom-up into
 * byte chunks so large tensors are never copied more than once.
 */

export class ProtoWriter {
  private chunks: Uint8Array[] = [];
  private scratch: number[] = [];
  private size = 0;

  get length(): number {
    return this.size + this.scratch.length;
  }

  private flushScratch(): void {
    if (this.scratch.length > 0) {
      const bytes = Uint8Array.from(this.scratch);
      this.chunks.push(bytes);
      this.size += bytes.length;
      this.scratch = [];
    }
  }

  private varint(value: number | bigint): void {
    let v = BigInt.asUintN(64, BigInt(value));
    while (v >= 0x80n) {
      this.scratch.push(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    this.scratch.push(Number(v));
  }

  private smallVarint(value: number): void {
    // Fast path for non-negative values below 2^31 (tags, lengths, enums).
    let v = value >>> 0;
    while (v >= 0x80) {
      this.scratch.push((v & 0x7f) | 0x80);
      v >>>= 7;
    }
    this.scratch.push(v);
  }

  private tag(field: number, wireType: number): void {
    this.smallVarint((field << 3) | wireType);
  }

  int(field: number, value: number | bigint): this {
    this.tag(field, 0);
    if (typeof value === "number" && value >= 0 && value < 2 ** 31) this.smallVarint(value);
    else this.varint(value);
    return this;
  }

  float(field: number, value: number): this {
    this.tag(field, 5);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, value, true);
    this.scratch.push(...b);
    return this;
  }

  bytes(field: number, data: Uint8Array): this {
    this.tag(field, 2);
    this.smallVarint(data.length);
    this.flushScratch();
    this.chunks.push(data);
    this.size += data.length;
    return this;
  }

  string(field: number, value: string): this {
    return this.bytes(field, new TextEncoder().encode(value));
  }

  message(field: number, sub: ProtoWriter): this {
    this.tag(field, 2);
    this.smallVarint(sub.length);
    this.flushScratch();
    for (const c of sub.finishChunks()) {
      this.chunks.push(c);
      this.size += c.length;
    }
    return this;
  }

  packedInts(field: number, values: readonly (number | bigint)[]): this {
    const sub = new ProtoWriter();
    for (const v of values) sub.varint(v);
    return this.bytes(field, sub.finish());
  }

  packedFloats(field: number, values: readonly number[]): this {
    const b = new Uint8Array(values.length * 4);
    const dv = new DataView(b.buffer);
    for (let i = 0; i < values.length; i++) dv.setFloat32(i * 4, values[i] as number, true);
    return this.bytes(field, b);
  }

  finishChunks(): Uint8Array[] {
    this.flushScratch();
    return this.chunks;
  }

  finish(): Uint8Array {
    const chunks = this.finishChunks();
    if (chunks.length === 1 && chunks[0]) return chunks[0];
    const out = new Uint8Array(this.size);
    let o = 0;
    for (const c of chunks) {
      out.set(c, o);
      o += c.length;
    }
    return out;
  }
}
