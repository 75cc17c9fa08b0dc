/**
 * Replicate's Files API: POST /files (multipart: the file part `content`, an optional
 * `metadata` JSON part or field), GET /files (paginated), GET /files/{id}, DELETE /files/{id}
 * and GET /files/{id}/download. Registered under /v1 and /replicate/v1, inside the token's
 * scope: another token's file is not found. The `replicate` clients upload every file input
 * here and send `urls.get` in its place; the worker reads such a URL's file inside.
 */
import type { FastifyInstance, FastifyRequest } from "fastify";
import { MAX_FILE_INPUT_BYTES } from "../files/file-inputs.js";
import { sniffContentType, type Uploads } from "../files/uploads.js";
import { urlBaseOf } from "../http/headers.js";
import { readMultipart, registerMultipart } from "../http/multipart.js";
import { HttpProblem, notFound } from "../http/problem.js";
import { PROBLEM } from "../schemas/definitions.js";
import type { JsonSchema } from "../schemas/json-schema.js";
import type { RouteSchema } from "../schemas/openapi.js";
import type { UploadRecord } from "../store/store.js";

export interface UploadRoutesOptions {
  apiPrefix: string;
  uploads: Uploads;
  publicBaseUrl: string | undefined;
}

/** Replicate's file object. */
const FILE: JsonSchema = {
  type: "object",
  required: ["id", "name", "content_type", "size", "etag", "checksums", "metadata", "created_at", "urls"],
  properties: {
    id: { type: "string" },
    name: { type: "string" },
    content_type: { type: "string" },
    size: { type: "integer" },
    etag: { type: "string" },
    checksums: { type: "object", properties: { sha256: { type: "string" } } },
    metadata: { description: "What the client sent as metadata (any JSON)" },
    created_at: { type: "string", format: "date-time" },
    expires_at: { type: "string", format: "date-time" },
    urls: { type: "object", properties: { get: { type: "string", format: "uri" } } },
  },
};
const FILE_PARAMS: JsonSchema = { type: "object", required: ["id"], properties: { id: { type: "string" } } };

const CREATE_SCHEMA: RouteSchema = {
  summary: "Upload a file (multipart: the file part content, optional metadata JSON); use urls.get as a file input",
  response: { 201: FILE, 413: PROBLEM, 415: PROBLEM, 422: PROBLEM },
};
const LIST_SCHEMA: RouteSchema = {
  summary: "The token's uploaded files, newest first",
  querystring: { type: "object", properties: { cursor: { type: "string" } } },
  response: {
    200: {
      type: "object",
      required: ["next", "previous", "results"],
      properties: {
        next: { type: ["string", "null"] },
        previous: { type: ["string", "null"] },
        results: { type: "array", items: FILE },
      },
    },
  },
};
const GET_SCHEMA: RouteSchema = {
  summary: "One uploaded file",
  params: FILE_PARAMS,
  response: { 200: FILE, 404: PROBLEM },
};
const DELETE_SCHEMA: RouteSchema = {
  summary: "Delete an uploaded file",
  params: FILE_PARAMS,
  response: { 204: { type: "null" }, 404: PROBLEM },
};
const DOWNLOAD_SCHEMA: RouteSchema = {
  summary: "An uploaded file's bytes (with the token that uploaded it)",
  params: FILE_PARAMS,
};

const PAGE_SIZE = 100;
const MAX_NAME = 255;
const MAX_METADATA_BYTES = 64 * 1024;
const MEDIA_TYPE = /^[a-z0-9!#$&^_.+-]{1,64}\/[a-z0-9!#$&^_.+-]{1,128}$/;

function fileJson(u: UploadRecord, api: string): Record<string, unknown> {
  return {
    id: u.id,
    name: u.name,
    content_type: u.contentType,
    size: u.size,
    etag: u.sha256.slice(0, 32),
    checksums: { sha256: u.sha256 },
    metadata: u.metadata,
    created_at: u.createdAt,
    expires_at: u.expiresAt,
    urls: { get: `${api}/files/${u.id}/download` },
  };
}

function encodeCursor(u: UploadRecord): string {
  return Buffer.from(`${u.createdAt}|${u.id}`).toString("base64url");
}

function decodeCursor(text: string): { createdAt: string; id: string } {
  const [createdAt, id, ...rest] = Buffer.from(text, "base64url").toString("utf8").split("|");
  if (!createdAt || !id || rest.length > 0 || !/^[a-z0-9]{1,64}$/.test(id) || createdAt.length > 40) {
    throw new HttpProblem(400, "Bad request", "Invalid cursor");
  }
  return { createdAt, id };
}

function parseMetadata(text: string | undefined): unknown {
  if (text === undefined || text.trim() === "") return {};
  try {
    return JSON.parse(text);
  } catch {
    throw new HttpProblem(422, "Invalid metadata", "metadata must be JSON");
  }
}

export async function uploadRoutes(app: FastifyInstance, opts: UploadRoutesOptions): Promise<void> {
  const { uploads } = opts;
  const api = (req: FastifyRequest) => urlBaseOf(req, opts.apiPrefix, opts.publicBaseUrl).api;
  // The file and, from the JS client, its metadata as a second (application/json) file part.
  const limits = { fileBytes: MAX_FILE_INPUT_BYTES, files: 2 };
  await registerMultipart(app, limits);

  app.post("/files", { schema: CREATE_SCHEMA }, async (req, reply) => {
    const body = await readMultipart(req, limits);
    const content = body.files.find((f) => f.field === "content");
    if (!content) throw new HttpProblem(422, "Missing file", "The multipart body must have a file part named content");
    const metaPart = body.files.find((f) => f.field === "metadata");
    if (metaPart && metaPart.data.length > MAX_METADATA_BYTES) {
      throw new HttpProblem(413, "Payload Too Large", `metadata is larger than ${MAX_METADATA_BYTES} bytes`);
    }
    const metadata = parseMetadata(metaPart ? Buffer.from(metaPart.data).toString("utf8") : body.fields["metadata"]);
    const name = (body.fields["filename"] ?? content.filename ?? "file").slice(0, MAX_NAME);
    // A plain type/subtype only: it is sent back as a header on download.
    const declared = (body.fields["type"] ?? content.mimetype ?? "").toLowerCase().split(";")[0]?.trim() ?? "";
    const contentType =
      MEDIA_TYPE.test(declared) && declared !== "application/octet-stream"
        ? declared
        : (sniffContentType(content.data) ?? "application/octet-stream");
    const u = await uploads.create(req.account, { name, contentType, data: content.data, metadata });
    return reply.code(201).send(fileJson(u, api(req)));
  });

  app.get<{ Querystring: { cursor?: string } }>("/files", { schema: LIST_SCHEMA }, async (req) => {
    const raw = req.query["cursor"];
    const cursor = typeof raw === "string" && raw !== "" ? decodeCursor(raw) : undefined;
    const rows = await uploads.list(req.account, PAGE_SIZE + 1, cursor);
    const page = rows.slice(0, PAGE_SIZE);
    const last = page[page.length - 1];
    const next = rows.length > PAGE_SIZE && last ? `${api(req)}/files?cursor=${encodeCursor(last)}` : null;
    return { next, previous: null, results: page.map((u) => fileJson(u, api(req))) };
  });

  app.get<{ Params: { id: string } }>("/files/:id", { schema: GET_SCHEMA }, async (req) => {
    const u = await uploads.get(req.account, req.params.id);
    if (!u) throw notFound();
    return fileJson(u, api(req));
  });

  app.delete<{ Params: { id: string } }>("/files/:id", { schema: DELETE_SCHEMA }, async (req, reply) => {
    if (!(await uploads.delete(req.account, req.params.id))) throw notFound();
    return reply.code(204).send();
  });

  app.get<{ Params: { id: string } }>("/files/:id/download", { schema: DOWNLOAD_SCHEMA }, async (req, reply) => {
    const u = await uploads.get(req.account, req.params.id);
    const data = u ? await uploads.read(u) : undefined;
    if (!u || !data) throw notFound();
    return reply
      .header("Content-Type", u.contentType)
      .header("Content-Length", String(data.length))
      .header("X-Content-Type-Options", "nosniff")
      .header("Content-Disposition", `attachment; filename="${u.name.replace(/[^\w.-]/g, "_")}"`)
      .header("Cache-Control", "private, no-store")
      .send(Buffer.from(data));
  });
}
