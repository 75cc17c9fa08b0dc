/**
 * FileStore: where output files are kept. Local disk (disk.ts) is the default; S3-compatible
 * object storage (s3.ts) is the shared one.
 */
export interface StoredFile {
  size: number;
  contentType: string;
  /** The file's bytes, read only when asked (HEAD needs the size alone). */
  read(): Promise<Uint8Array>;
}

export interface FileStore {
  put(predictionId: string, name: string, data: Uint8Array, contentType: string): Promise<void>;
  get(predictionId: string, name: string): Promise<StoredFile | undefined>;
  /** Deletes every file of a prediction (retention, or a prediction canceled as it finished). */
  removeAll(predictionId: string): Promise<void>;
  /**
   * A URL where the file can be fetched directly for about `expiresInSeconds` (a presigned URL),
   * or undefined when the API should serve the bytes itself.
   */
  url?(predictionId: string, name: string, expiresInSeconds: number): Promise<string | undefined>;
  close?(): void;
}
