import assert from "node:assert/strict";
import { test } from "node:test";
import * as ort from "onnxruntime-node";
import { f, GraphBuilder } from "../../src/engine/graph/onnx.js";

test("a graph built in TypeScript runs on onnxruntime", async () => {
  const g = new GraphBuilder("t");
  const x = g.input("x", "float32", ["batch", 2]);
  const w = g.initializer("w", {
    kind: "inline",
    dtype: "float32",
    dims: [2, 3],
    data: new Uint8Array(Float32Array.from([1, 2, 3, 4, 5, 6]).buffer),
  });
  const y = g.op("MatMul", [x, w]);
  const z = g.op("LeakyRelu", [g.op("Sub", [y, g.scalar(10)])], { alpha: f(0.5) });
  g.output(z, "z", "float32", ["batch", 3]);
  const session = await ort.InferenceSession.create(g.toModel());
  const out = await session.run({ x: new ort.Tensor("float32", Float32Array.from([1, 1, 2, 0]), [2, 2]) });
  // [1,1]·W = [5,7,9] → -5,-3,-1 → ×0.5;  [2,0]·W = [2,4,6] → -8,-6,-4 → ×0.5
  assert.deepEqual(Array.from(out.z!.data as Float32Array), [-2.5, -1.5, -0.5, -4, -3, -2]);
  await session.release();
});
