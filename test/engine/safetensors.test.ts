import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { open as openAsync } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import { ModelError } from "../../src/engine/errors.js";
import { readSafetensors, readTensor, type TensorInfo } from "../../src/engine/weights/safetensors.js";
import { encodeSafetensors, writeSafetensors } from "../../src/engine/weights/safetensors-writer.js";
import { modelDir, readJson } from "../helpers/fixtures.js";

const tmp = mkdtempSync(path.join(os.tmpdir(), "sdserve-safetensors-"));
after(() => rmSync(tmp, { recursive: true, force: true }));
let counter = 0;
const tmpFile = (name = "t.safetensors") => path.join(tmp, `${counter++}-${name}`);

const u16 = (values: number[]) => new Uint8Array(Uint16Array.from(values).buffer);

/** A file with the given header text (or object) and data bytes, optionally a lying length field. */
function rawFile(header: string | object, data: Uint8Array = new Uint8Array(), lengthField?: bigint): string {
  const json = Buffer.from(typeof header === "string" ? header : JSON.stringify(header), "utf8");
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(lengthField ?? BigInt(json.length));
  const file = tmpFile();
  writeFileSync(file, Buffer.concat([len, json, data]));
  return file;
}

async function expectModelError(p: Promise<unknown>, file: string, pattern: RegExp, field?: string): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof ModelError, `expected ModelError, got ${String(err)}`);
    assert.ok(err.message.includes(file), `message should name the file: ${err.message}`);
    assert.match(err.message, pattern);
    if (field !== undefined) {
      assert.equal(err.field, field);
      assert.ok(err.message.includes(field), `message should name the tensor: ${err.message}`);
    }
    return true;
  });
}

describe("fixture models", () => {
  for (const model of ["tiny-sd1", "tiny-sd2v"] as const) {
    test(`${model}: text encoder header agrees with its config`, async () => {
      const dir = path.join(modelDir(model), "text_encoder");
      // biome-ignore lint/suspicious/noExplicitAny: config.json is free-form
      const cfg = readJson<any>(path.join(dir, "config.json"));
      const file = path.join(dir, "model.safetensors");
      const st = await readSafetensors(file);
      assert.deepEqual(st.metadata, { format: "pt" });
      // Embeddings (token, position), 16 tensors per layer, final layer norm weight and bias.
      assert.equal(st.tensors.size, 2 + 16 * cfg.num_hidden_layers + 2);
      const h = cfg.hidden_size;
      const shape = (n: string) => st.tensors.get(`text_model.${n}`)?.shape;
      assert.deepEqual(shape("embeddings.token_embedding.weight"), [cfg.vocab_size, h]);
      assert.deepEqual(shape("embeddings.position_embedding.weight"), [cfg.max_position_embeddings, h]);
      const last = cfg.num_hidden_layers - 1;
      assert.deepEqual(shape(`encoder.layers.${last}.self_attn.q_proj.weight`), [h, h]);
      assert.deepEqual(shape(`encoder.layers.${last}.mlp.fc1.weight`), [cfg.intermediate_size, h]);
      assert.deepEqual(shape(`encoder.layers.${last}.mlp.fc2.weight`), [h, cfg.intermediate_size]);
      assert.deepEqual(shape("final_layer_norm.bias"), [h]);
      assertCoversData(file, st.tensors);
    });

    test(`${model}: unet and vae headers agree with their configs`, async () => {
      // biome-ignore lint/suspicious/noExplicitAny: config.json is free-form
      const unetCfg = readJson<any>(path.join(modelDir(model), "unet", "config.json"));
      const unetFile = path.join(modelDir(model), "unet", "diffusion_pytorch_model.safetensors");
      const unet = await readSafetensors(unetFile);
      const c0 = unetCfg.block_out_channels[0];
      const nBlocks = unetCfg.block_out_channels.length;
      assert.deepEqual(unet.tensors.get("conv_in.weight")?.shape, [c0, unetCfg.in_channels, 3, 3]);
      assert.deepEqual(unet.tensors.get("conv_out.weight")?.shape, [unetCfg.out_channels, c0, 3, 3]);
      assert.deepEqual(unet.tensors.get("time_embedding.linear_1.weight")?.shape, [4 * c0, c0]);
      const resnets = prefixes(unet.tensors, /^((?:down|up)_blocks\.\d+\.resnets\.\d+)\./);
      assert.equal(resnets.size, nBlocks * unetCfg.layers_per_block + nBlocks * (unetCfg.layers_per_block + 1));
      const crossDown = unetCfg.down_block_types.filter((t: string) => t.startsWith("CrossAttn")).length;
      const downAttn = prefixes(unet.tensors, /^(down_blocks\.\d+\.attentions\.\d+)\./);
      assert.equal(downAttn.size, crossDown * unetCfg.layers_per_block);
      const toK = [...unet.tensors.values()].filter((t) => t.name.endsWith("attn2.to_k.weight"));
      assert.ok(toK.length > 0);
      for (const t of toK) assert.equal(t.shape[1], unetCfg.cross_attention_dim, t.name);
      assertCoversData(unetFile, unet.tensors);

      // biome-ignore lint/suspicious/noExplicitAny: config.json is free-form
      const vaeCfg = readJson<any>(path.join(modelDir(model), "vae", "config.json"));
      const vaeFile = path.join(modelDir(model), "vae", "diffusion_pytorch_model.safetensors");
      const vae = await readSafetensors(vaeFile);
      const top = vaeCfg.block_out_channels.at(-1);
      assert.deepEqual(vae.tensors.get("decoder.conv_in.weight")?.shape, [top, vaeCfg.latent_channels, 3, 3]);
      assert.deepEqual(vae.tensors.get("post_quant_conv.weight")?.shape, [
        vaeCfg.latent_channels,
        vaeCfg.latent_channels,
        1,
        1,
      ]);
      assert.deepEqual(vae.tensors.get("decoder.conv_out.weight")?.shape, [
        vaeCfg.out_channels,
        vaeCfg.block_out_channels[0],
        3,
        3,
      ]);
      const decResnets = prefixes(vae.tensors, /^(decoder\.up_blocks\.\d+\.resnets\.\d+)\./);
      assert.equal(decResnets.size, vaeCfg.block_out_channels.length * (vaeCfg.layers_per_block + 1));
      assertCoversData(vaeFile, vae.tensors);
    });
  }

  test("readTensor returns the stored float32 bytes", async () => {
    const file = path.join(modelDir("tiny-sd1"), "unet", "diffusion_pytorch_model.safetensors");
    const st = await readSafetensors(file);
    const info = st.tensors.get("conv_in.weight")!;
    const values = await readTensor(info);
    const bytes = readFileSync(file).subarray(info.byteOffset, info.byteOffset + info.byteLength);
    const expected = new Float32Array(Uint8Array.from(bytes).buffer);
    assert.equal(values.length, 32 * 4 * 3 * 3);
    assert.deepEqual(values, expected);
  });
});

/** Every data byte belongs to exactly one tensor (what the reference writer produces). */
function assertCoversData(file: string, tensors: Map<string, TensorInfo>): void {
  const size = readFileSync(file).length;
  const headerLen = Number(readFileSync(file).readBigUInt64LE(0));
  const sorted = [...tensors.values()].sort((a, b) => a.byteOffset - b.byteOffset);
  let at = 8 + headerLen;
  for (const t of sorted) {
    assert.equal(t.byteOffset, at, t.name);
    assert.equal(t.dtype, "F32");
    assert.equal(t.byteLength, t.shape.reduce((a, d) => a * d, 1) * 4, t.name);
    at += t.byteLength;
  }
  assert.equal(at, size);
}

function prefixes(tensors: Map<string, TensorInfo>, re: RegExp): Set<string> {
  const out = new Set<string>();
  for (const name of tensors.keys()) {
    const m = re.exec(name);
    if (m) out.add(m[1]!);
  }
  return out;
}

describe("round trip of files written here", () => {
  test("F32, F64, integers, BOOL, scalars and empty tensors", async () => {
    const file = tmpFile();
    const f32 = Float32Array.from([1.5, -2, 3.25e-39, Number.POSITIVE_INFINITY, 0, -0]);
    const f64 = Float64Array.from([1 / 3, -1e300, 5e-324]);
    await writeSafetensors(
      file,
      [
        { name: "f32", dtype: "F32", shape: [2, 3], data: f32 },
        { name: "f64", dtype: "F64", shape: [3], data: f64 },
        { name: "i64", dtype: "I64", shape: [2], data: BigInt64Array.from([-5n, 2n ** 40n]) },
        { name: "i32", dtype: "I32", shape: [1], data: Int32Array.from([-7]) },
        { name: "u8", dtype: "U8", shape: [2], data: Uint8Array.from([0, 255]) },
        { name: "i8", dtype: "I8", shape: [2], data: Int8Array.from([-128, 127]) },
        { name: "bool", dtype: "BOOL", shape: [3], data: Uint8Array.from([0, 1, 2]) },
        { name: "scalar", dtype: "F32", shape: [], data: Float32Array.from([42]) },
        { name: "empty", dtype: "F32", shape: [0, 3], data: new Float32Array(0) },
      ],
      { format: "pt", note: "written by the test" },
    );
    const st = await readSafetensors(file);
    assert.deepEqual(st.metadata, { format: "pt", note: "written by the test" });
    assert.equal(st.tensors.size, 9);
    const read = async (n: string) => Array.from(await readTensor(st.tensors.get(n)!));
    assert.deepEqual(await read("f32"), Array.from(f32));
    assert.deepEqual(await read("f64"), [Math.fround(1 / 3), Number.NEGATIVE_INFINITY, 0]);
    assert.deepEqual(await read("i64"), [-5, 2 ** 40]);
    assert.deepEqual(await read("i32"), [-7]);
    assert.deepEqual(await read("u8"), [0, 255]);
    assert.deepEqual(await read("i8"), [-128, 127]);
    assert.deepEqual(await read("bool"), [0, 1, 1]);
    assert.deepEqual(await read("scalar"), [42]);
    assert.deepEqual(st.tensors.get("scalar")?.shape, []);
    assert.deepEqual(await read("empty"), []);
    assert.equal(st.tensors.get("empty")?.byteLength, 0);
  });

  test("F16: normals, subnormals, signed zero, infinities and NaN", async () => {
    const cases: [number, number][] = [
      [0x0000, 0],
      [0x8000, -0],
      [0x0001, 2 ** -24], // smallest subnormal
      [0x8001, -(2 ** -24)],
      [0x03ff, 1023 * 2 ** -24], // largest subnormal
      [0x0400, 2 ** -14], // smallest normal
      [0x3c00, 1],
      [0x3c01, 1 + 2 ** -10],
      [0xc000, -2],
      [0x3555, 0.333251953125],
      [0x7bff, 65504],
      [0xfbff, -65504],
      [0x7c00, Number.POSITIVE_INFINITY],
      [0xfc00, Number.NEGATIVE_INFINITY],
      [0x7e00, Number.NaN],
      [0xfe01, Number.NaN],
    ];
    const file = tmpFile();
    await writeSafetensors(file, [
      { name: "h", dtype: "F16", shape: [cases.length], data: u16(cases.map((c) => c[0])) },
    ]);
    const values = await readTensor((await readSafetensors(file)).tensors.get("h")!);
    cases.forEach(([bits, expected], i) => {
      assert.ok(Object.is(values[i], expected), `0x${bits.toString(16)} → ${values[i]}, expected ${expected}`);
    });
  });

  test("BF16 is the top half of float32, NaN and subnormals included", async () => {
    const cases: [number, number][] = [
      [0x3f80, 1],
      [0xc040, -3],
      [0x4049, 3.140625],
      [0x8000, -0],
      [0x0001, 2 ** -133],
      [0x7f7f, 3.3895313892515355e38],
      [0x7f80, Number.POSITIVE_INFINITY],
      [0xff80, Number.NEGATIVE_INFINITY],
      [0x7fc0, Number.NaN],
    ];
    const file = tmpFile();
    await writeSafetensors(file, [
      { name: "b", dtype: "BF16", shape: [cases.length], data: u16(cases.map((c) => c[0])) },
    ]);
    const values = await readTensor((await readSafetensors(file)).tensors.get("b")!);
    cases.forEach(([bits, expected], i) => {
      assert.ok(Object.is(values[i], expected), `0x${bits.toString(16)} → ${values[i]}, expected ${expected}`);
    });
  });

  test("FP8 E4M3 and E5M2", async () => {
    const file = tmpFile();
    await writeSafetensors(file, [
      { name: "e4m3", dtype: "F8_E4M3", shape: [5], data: Uint8Array.from([0x38, 0xc0, 0x7e, 0x01, 0x7f]) },
      { name: "e5m2", dtype: "F8_E5M2", shape: [4], data: Uint8Array.from([0x3c, 0xc0, 0x7c, 0x01]) },
    ]);
    const st = await readSafetensors(file);
    assert.deepEqual(Array.from(await readTensor(st.tensors.get("e4m3")!)), [1, -2, 448, 2 ** -9, Number.NaN]);
    assert.deepEqual(Array.from(await readTensor(st.tensors.get("e5m2")!)), [
      1,
      -2,
      Number.POSITIVE_INFINITY,
      2 ** -16,
    ]);
  });

  test("offsets are absolute and the header is padded to 8 bytes", async () => {
    const bytes = encodeSafetensors([{ name: "a", dtype: "U8", shape: [3], data: Uint8Array.from([7, 8, 9]) }]);
    const headerLen = Number(Buffer.from(bytes).readBigUInt64LE(0));
    assert.equal(headerLen % 8, 0);
    const file = tmpFile();
    writeFileSync(file, bytes);
    const info = (await readSafetensors(file)).tensors.get("a")!;
    assert.deepEqual(info, { name: "a", dtype: "U8", shape: [3], file, byteOffset: 8 + headerLen, byteLength: 3 });
  });

  test("only the header is read: a 4 GiB (sparse) file opens at once", async () => {
    const file = tmpFile("big.safetensors");
    const big = 1024 * 1024 * 1024;
    const header = {
      big: { dtype: "F32", shape: [1024, 1024, 1024], data_offsets: [0, 4 * big] },
      tail: { dtype: "F32", shape: [2], data_offsets: [4 * big, 4 * big + 8] },
    };
    const json = Buffer.from(JSON.stringify(header));
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    writeFileSync(file, Buffer.concat([len, json]));
    const dataStart = 8 + json.length;
    // Writing past the end leaves a hole: the file is 4 GiB long but takes no disk space.
    const fh = await openAsync(file, "r+");
    await fh.write(new Uint8Array(Float32Array.from([6, 7]).buffer), 0, 8, dataStart + 4 * big);
    await fh.close();
    const st = await readSafetensors(file);
    assert.equal(st.tensors.get("big")?.byteLength, 4 * big);
    assert.deepEqual(Array.from(await readTensor(st.tensors.get("tail")!)), [6, 7]);
  });
});

describe("malformed files give a ModelError naming the file", () => {
  const f32 = (n: number) => new Uint8Array(4 * n);

  test("shorter than 8 bytes", async () => {
    for (const n of [0, 1, 7]) {
      const file = tmpFile();
      writeFileSync(file, new Uint8Array(n));
      await expectModelError(readSafetensors(file), file, /too short/);
    }
  });

  test("header length larger than the file", async () => {
    const file = rawFile('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', f32(1), 1000n);
    await expectModelError(readSafetensors(file), file, /past the end of the file/);
  });

  test("absurd header length", async () => {
    for (const len of [100_000_001n, 2n ** 40n, 2n ** 64n - 1n]) {
      const file = rawFile("{}", new Uint8Array(), len);
      await expectModelError(readSafetensors(file), file, /over the 100000000-byte limit/);
    }
  });

  test("header not UTF-8, not JSON, not an object", async () => {
    const notUtf8 = tmpFile();
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(4n);
    writeFileSync(notUtf8, Buffer.concat([len, Buffer.from([0x7b, 0xff, 0xfe, 0x7d])]));
    await expectModelError(readSafetensors(notUtf8), notUtf8, /not valid UTF-8/);
    for (const [text, re] of [
      ['{"a": ', /not valid JSON/],
      ["[1, 2]", /does not start with '\{'/],
      ["null", /does not start with '\{'/],
      ["", /does not start with '\{'/],
    ] as const) {
      const file = rawFile(text);
      await expectModelError(readSafetensors(file), file, re);
    }
  });

  test("trailing spaces in the header are allowed", async () => {
    const file = rawFile('{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}     ', Uint8Array.from([3]));
    assert.deepEqual(Array.from(await readTensor((await readSafetensors(file)).tensors.get("a")!)), [3]);
  });

  const badEntries: [string, unknown, RegExp][] = [
    ["unknown dtype", { dtype: "F17", shape: [1], data_offsets: [0, 4] }, /unknown dtype "F17"/],
    ["missing dtype", { shape: [1], data_offsets: [0, 4] }, /unknown dtype undefined/],
    ["lower-case dtype", { dtype: "f32", shape: [1], data_offsets: [0, 4] }, /unknown dtype/],
    ["negative dimension", { dtype: "F32", shape: [-1], data_offsets: [0, 4] }, /shape must be a list/],
    ["fractional dimension", { dtype: "F32", shape: [1.5], data_offsets: [0, 4] }, /shape must be a list/],
    ["shape not a list", { dtype: "F32", shape: "1", data_offsets: [0, 4] }, /shape must be a list/],
    ["null dimension", { dtype: "F32", shape: [null], data_offsets: [0, 4] }, /shape must be a list/],
    ["one offset", { dtype: "F32", shape: [1], data_offsets: [4] }, /data_offsets must be two/],
    ["begin > end", { dtype: "F32", shape: [1], data_offsets: [4, 0] }, /begin <= end/],
    ["string offset", { dtype: "F32", shape: [1], data_offsets: ["0", 4] }, /data_offsets must be two/],
    ["negative offset", { dtype: "F32", shape: [0], data_offsets: [-4, -4] }, /data_offsets must be two/],
    ["length ≠ shape × size", { dtype: "F32", shape: [2], data_offsets: [0, 4] }, /byte length 4 does not match/],
    ["F16 length", { dtype: "F16", shape: [3], data_offsets: [0, 4] }, /does not match F16 \[3\] \(6 bytes\)/],
    ["huge shape", { dtype: "F32", shape: [2 ** 40, 2 ** 40], data_offsets: [0, 4] }, /does not match/],
    ["entry not an object", [0, 4], /not an object/],
  ];
  for (const [label, entry, re] of badEntries) {
    test(`tensor entry: ${label}`, async () => {
      const file = rawFile({ "layer.weight": entry }, f32(1));
      await expectModelError(readSafetensors(file), file, re, "layer.weight");
    });
  }

  test("__metadata__ must map strings to strings", async () => {
    for (const meta of [{ format: 1 }, ["pt"], "pt"]) {
      const file = rawFile({ __metadata__: meta });
      await expectModelError(readSafetensors(file), file, /string/, "__metadata__");
    }
  });

  test("offsets past the end of the file (truncated)", async () => {
    const file = tmpFile();
    await writeSafetensors(file, [
      { name: "a", dtype: "F32", shape: [4], data: f32(4) },
      { name: "b", dtype: "F32", shape: [4], data: f32(4) },
    ]);
    truncateSync(file, readFileSync(file).length - 1);
    await expectModelError(readSafetensors(file), file, /truncated/, "b");
  });

  test("overlapping tensors", async () => {
    const file = rawFile(
      {
        a: { dtype: "F32", shape: [4], data_offsets: [0, 16] },
        b: { dtype: "F32", shape: [4], data_offsets: [8, 24] },
        empty: { dtype: "F32", shape: [0], data_offsets: [4, 4] },
      },
      f32(6),
    );
    await expectModelError(readSafetensors(file), file, /overlap tensor "a"/, "b");
  });

  test("missing file, a folder, and a FIFO (which must not hang)", async () => {
    const missing = path.join(tmp, "nope.safetensors");
    await expectModelError(readSafetensors(missing), missing, /not found/);
    const folder = path.join(tmp, "a-folder.safetensors");
    mkdirSync(folder);
    await expectModelError(readSafetensors(folder), folder, /is a directory/);
    const fifo = path.join(tmp, "fifo.safetensors");
    try {
      execFileSync("mkfifo", [fifo]);
    } catch {
      return; // no mkfifo on this system
    }
    await expectModelError(readSafetensors(fifo), fifo, /not a regular file/);
  });

  test("readTensor on a file truncated after its header was read", async () => {
    const file = tmpFile();
    await writeSafetensors(file, [{ name: "w", dtype: "F32", shape: [8], data: f32(8) }]);
    const info = (await readSafetensors(file)).tensors.get("w")!;
    truncateSync(file, info.byteOffset + 5);
    await expectModelError(readTensor(info), file, /truncated/, "w");
  });
});
