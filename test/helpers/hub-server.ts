/**
 * A local Hugging Face Hub: serves model repositories over HTTP in the hub's URL layout, for
 * HF_ENDPOINT to point at (no test touches the real hub). What it answers is what the clients
 * use:
 *
 *   GET /api/models/{repo}/revision/{rev}        model info: sha (the commit), siblings, gated
 *   GET /api/models/{repo}/tree/{rev}[/{path}]   files with size, oid (git blob id) and lfs.oid
 *                                                (sha256), paginated through Link: rel="next"
 *   GET|HEAD /{repo}/resolve/{rev}/{path}        the bytes: ETag, X-Repo-Commit, X-Linked-Etag,
 *                                                X-Linked-Size, Accept-Ranges, Range → 206
 *
 * Refusals carry X-Error-Code (RepoNotFound, GatedRepo, RevisionNotFound, EntryNotFound) as the
 * hub's do. Faults can be injected per file: a connection cut after N bytes, or bytes corrupted
 * on the way. Every request is recorded.
 */
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";

const LFS_EXTENSIONS = [".safetensors", ".bin", ".ckpt", ".onnx", ".msgpack", ".h5", ".pt"];

export interface HubFile {
  data: Buffer;
  lfs: boolean;
  /** sha256 for LFS files, git blob sha1 otherwise: the ETag and blob name. */
  etag: string;
  gitOid: string;
}

export interface HubRepo {
  commit: string;
  files: Map<string, HubFile>;
  /** When set, resolve needs `Authorization: Bearer <token>`. */
  gatedToken?: string;
}

export interface RecordedRequest {
  method: string;
  url: string;
  /** For resolve requests: the file path. */
  file?: string;
  range?: string;
  authorization?: string;
  /** Bytes of file content sent in the answer. */
  bytesSent: number;
}

export interface Faults {
  /** Cut the connection after this many bytes of the file's body, on the next N downloads of it. */
  cut?: Map<string, { afterBytes: number; times: number }>;
  /** Flip a byte of the file in every download of it. */
  corrupt?: Set<string>;
  /** Send this many bytes of the file, then wait for `released` before the rest. */
  hold?: { file: string; afterBytes: number; released: Promise<void> };
}

function gitBlobId(data: Buffer): string {
  return createHash("sha1").update(`blob ${data.length}\0`).update(data).digest("hex");
}

export function hubFile(data: Buffer, repoPath: string): HubFile {
  const lfs = LFS_EXTENSIONS.some((e) => repoPath.endsWith(e));
  const gitOid = gitBlobId(lfs ? Buffer.from(`version https://git-lfs.github.com/spec/v1\n`) : data);
  return { data, lfs, etag: lfs ? createHash("sha256").update(data).digest("hex") : gitBlobId(data), gitOid };
}

/** Every file under a folder, as repository paths. */
export function filesOfFolder(dir: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  const walk = (d: string, prefix: string) => {
    for (const name of readdirSync(d).sort()) {
      const full = path.join(d, name);
      if (statSync(full).isDirectory()) walk(full, `${prefix}${name}/`);
      else out.set(`${prefix}${name}`, readFileSync(full));
    }
  };
  walk(dir, "");
  return out;
}

export class LocalHub {
  readonly repos = new Map<string, HubRepo>();
  readonly requests: RecordedRequest[] = [];
  faults: Faults = {};
  /** Entries per page of a tree listing. */
  pageSize = 8;
  private constructor(
    private readonly server: Server,
    readonly url: string,
  ) {}

  static async start(): Promise<LocalHub> {
    let hub: LocalHub | undefined;
    const server = createServer((req, res) => {
      hub?.handle(req, res).catch((err: unknown) => {
        res.destroy(err instanceof Error ? err : new Error(String(err)));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    hub = new LocalHub(server, `http://127.0.0.1:${port}`);
    return hub;
  }

  addRepo(repo: string, files: Map<string, Buffer>, opts: { gatedToken?: string } = {}): HubRepo {
    const entries = new Map([...files].map(([p, data]) => [p, hubFile(data, p)] as const));
    const commit = createHash("sha1")
      .update(JSON.stringify([...entries].map(([p, f]) => [p, f.etag])))
      .digest("hex");
    const r: HubRepo = { commit, files: entries, gatedToken: opts.gatedToken };
    this.repos.set(repo, r);
    return r;
  }

  /** The file paths downloaded (resolve GETs), in order, one per request. */
  downloads(): string[] {
    return this.requests.filter((r) => r.method === "GET" && r.file !== undefined).map((r) => r.file as string);
  }

  reset(): void {
    this.requests.length = 0;
    this.faults = {};
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private refuse(res: ServerResponse, status: number, code: string, message: string): void {
    res.writeHead(status, { "content-type": "application/json", "x-error-code": code });
    res.end(JSON.stringify({ error: message }));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", this.url);
    const record: RecordedRequest = {
      method: req.method ?? "GET",
      url: url.pathname + url.search,
      range: req.headers.range,
      authorization: req.headers.authorization,
      bytesSent: 0,
    };
    this.requests.push(record);
    const parts = url.pathname.split("/").slice(1).map(decodeURIComponent);

    if (parts[0] === "api" && parts[1] === "models") {
      const repo = this.repos.get(`${parts[2]}/${parts[3]}`);
      if (!repo) return this.refuse(res, 401, "RepoNotFound", "Repository not found");
      const [, , , , kind, rev, ...rest] = parts;
      if (rev !== "main" && rev !== "HEAD" && rev !== repo.commit) {
        return this.refuse(res, 404, "RevisionNotFound", `Invalid rev id: ${rev}`);
      }
      if (kind === "revision") return this.modelInfo(res, `${parts[2]}/${parts[3]}`, repo);
      if (kind === "tree") return this.tree(res, url, repo, rest.join("/"));
      return this.refuse(res, 404, "NotFound", "no such route");
    }

    // /{owner}/{name}/resolve/{rev}/{path...}
    if (parts[2] === "resolve") {
      const repo = this.repos.get(`${parts[0]}/${parts[1]}`);
      if (!repo) return this.refuse(res, 401, "RepoNotFound", "Repository not found");
      const rev = parts[3];
      if (rev !== "main" && rev !== repo.commit) return this.refuse(res, 404, "RevisionNotFound", "Invalid rev id");
      if (repo.gatedToken !== undefined && req.headers.authorization !== `Bearer ${repo.gatedToken}`) {
        return req.headers.authorization
          ? this.refuse(res, 403, "GatedRepo", "Access to this repository is restricted")
          : this.refuse(res, 401, "GatedRepo", "Access to this repository is restricted");
      }
      const filePath = parts.slice(4).join("/");
      const file = repo.files.get(filePath);
      if (!file) return this.refuse(res, 404, "EntryNotFound", "Entry not found");
      record.file = req.method === "GET" ? filePath : undefined;
      return this.resolve(req, res, repo, filePath, file, record);
    }
    return this.refuse(res, 404, "NotFound", "no such route");
  }

  private modelInfo(res: ServerResponse, id: string, repo: HubRepo): void {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(
      JSON.stringify({
        _id: createHash("md5").update(id).digest("hex").slice(0, 24),
        id,
        sha: repo.commit,
        private: false,
        gated: repo.gatedToken !== undefined ? "manual" : false,
        pipeline_tag: "text-to-image",
        downloads: 0,
        likes: 0,
        lastModified: "2024-06-01T00:00:00.000Z",
        siblings: [...repo.files.keys()].map((rfilename) => ({ rfilename })),
      }),
    );
  }

  private tree(res: ServerResponse, url: URL, repo: HubRepo, prefix: string): void {
    const recursive = url.searchParams.get("recursive") === "true";
    const entries: Record<string, unknown>[] = [];
    const dirs = new Set<string>();
    for (const [p, f] of repo.files) {
      if (prefix && !p.startsWith(`${prefix}/`)) continue;
      const rel = prefix ? p.slice(prefix.length + 1) : p;
      const slash = rel.indexOf("/");
      if (slash >= 0) {
        const dir = (prefix ? `${prefix}/` : "") + rel.slice(0, slash);
        if (!dirs.has(dir)) {
          dirs.add(dir);
          entries.push({ type: "directory", oid: "0".repeat(40), size: 0, path: dir });
        }
        if (!recursive) continue;
      }
      entries.push({
        type: "file",
        oid: f.gitOid,
        size: f.data.length,
        path: p,
        ...(f.lfs ? { lfs: { oid: f.etag, size: f.data.length, pointerSize: 134 } } : {}),
      });
    }
    const cursor = Number(url.searchParams.get("cursor") ?? 0);
    const page = entries.slice(cursor, cursor + this.pageSize);
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (cursor + this.pageSize < entries.length) {
      const next = new URL(url);
      next.searchParams.set("cursor", String(cursor + this.pageSize));
      headers["link"] = `<${next.href}>; rel="next"`;
    }
    res.writeHead(200, headers);
    res.end(JSON.stringify(page));
  }

  private resolve(
    req: IncomingMessage,
    res: ServerResponse,
    repo: HubRepo,
    filePath: string,
    file: HubFile,
    record: RecordedRequest,
  ): void {
    let data = file.data;
    if (this.faults.corrupt?.has(filePath)) {
      data = Buffer.from(data);
      const i = Math.floor(data.length / 2);
      data[i] = (data[i] as number) ^ 0xff;
    }
    const headers: Record<string, string | number> = {
      etag: `"${file.etag}"`,
      "x-repo-commit": repo.commit,
      "accept-ranges": "bytes",
      "content-type": "application/octet-stream",
    };
    if (file.lfs) {
      headers["x-linked-etag"] = `"${file.etag}"`;
      headers["x-linked-size"] = file.data.length;
    }
    let start = 0;
    let end = data.length - 1;
    let status = 200;
    const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? "");
    if (m) {
      start = Number(m[1]);
      end = m[2] ? Math.min(Number(m[2]), end) : end;
      if (start >= data.length) {
        res.writeHead(416, { "content-range": `bytes */${data.length}` });
        res.end();
        return;
      }
      status = 206;
      headers["content-range"] = `bytes ${start}-${end}/${data.length}`;
    }
    const body = data.subarray(start, end + 1);
    headers["content-length"] = body.length;
    res.writeHead(status, headers);
    if (req.method === "HEAD") {
      res.end();
      return;
    }
    const hold = this.faults.hold;
    if (hold?.file === filePath && body.length > hold.afterBytes) {
      record.bytesSent = body.length;
      res.write(body.subarray(0, hold.afterBytes));
      void hold.released.then(() => res.end(body.subarray(hold.afterBytes)));
      return;
    }
    const cut = this.faults.cut?.get(filePath);
    if (cut && cut.times > 0 && body.length > cut.afterBytes) {
      cut.times--;
      record.bytesSent = cut.afterBytes;
      // Send part of the body, then drop the connection as a flaky network would.
      res.write(body.subarray(0, cut.afterBytes), () => setTimeout(() => res.socket?.destroy(), 20));
      return;
    }
    record.bytesSent = body.length;
    res.end(body);
  }
}
