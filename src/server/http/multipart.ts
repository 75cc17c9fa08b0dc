/**
 * multipart/form-data bodies (the Files API's uploads, OpenAI's image edits), read whole with
 * every limit set: a few parts, a few files, bounded sizes. A malformed or oversized body is a
 * 400 or 413 problem, never a 500.
 */
import multipart from "@fastify/multipart";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { HttpProblem } from "./problem.js";

export interface FilePart {
  field: string;
  filename: string | undefined;
  mimetype: string;
  data: Uint8Array;
}

export interface MultipartBody {
  files: FilePart[];
  /** Text fields; a repeated name keeps its last value. */
  fields: Record<string, string>;
}

export interface MultipartLimits {
  /** Largest file part, in bytes. */
  fileBytes: number;
  /** At most this many file parts. */
  files: number;
}

const FIELD_BYTES = 64 * 1024;
const MAX_FIELDS = 32;

/** Registers the multipart parser in this (encapsulated) scope, with limits that only tighten per request. */
export async function registerMultipart(app: FastifyInstance, limits: MultipartLimits): Promise<void> {
  await app.register(multipart, {
    limits: {
      fileSize: limits.fileBytes,
      files: limits.files,
      fields: MAX_FIELDS,
      fieldSize: FIELD_BYTES,
      parts: limits.files + MAX_FIELDS,
      headerPairs: 32,
    },
    throwFileSizeLimit: true,
  });
}

function asProblem(err: unknown, limits: MultipartLimits): HttpProblem {
  if (err instanceof HttpProblem) return err;
  const e = err as { statusCode?: number; code?: string; message?: string };
  if (e.statusCode === 413 || e.code === "FST_REQ_FILE_TOO_LARGE") {
    return new HttpProblem(
      413,
      "Payload Too Large",
      e.code === "FST_REQ_FILE_TOO_LARGE"
        ? `A file is larger than ${limits.fileBytes} bytes`
        : `Too many parts in the multipart body (at most ${limits.files} files and ${MAX_FIELDS} fields)`,
    );
  }
  if (e.statusCode === 406 || e.code === "FST_INVALID_MULTIPART_CONTENT_TYPE") {
    return new HttpProblem(415, "Unsupported Media Type", "The request body must be multipart/form-data");
  }
  return new HttpProblem(400, "Bad request", `The multipart body could not be read: ${e.message ?? String(err)}`);
}

/** The whole body, parts in order; throws HttpProblem. */
export async function readMultipart(req: FastifyRequest, limits: MultipartLimits): Promise<MultipartBody> {
  if (!req.isMultipart()) {
    throw new HttpProblem(415, "Unsupported Media Type", "The request body must be multipart/form-data");
  }
  const out: MultipartBody = { files: [], fields: {} };
  try {
    for await (const part of req.parts()) {
      if (part.type === "file") {
        const data = await part.toBuffer();
        out.files.push({ field: part.fieldname, filename: part.filename || undefined, mimetype: part.mimetype, data });
      } else {
        if (part.fieldnameTruncated || part.valueTruncated) {
          throw new HttpProblem(
            413,
            "Payload Too Large",
            `The field ${part.fieldname} is longer than ${FIELD_BYTES} bytes`,
          );
        }
        out.fields[part.fieldname] = String(part.value);
      }
    }
  } catch (err) {
    throw asProblem(err, limits);
  }
  return out;
}
