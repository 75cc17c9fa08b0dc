/**
 * Standard Webhooks signing, as Replicate signs its webhooks (spec §5): the secret is
 * `whsec_` + standard base64 of random bytes (never base64url: python splits the key on "_"
 * and the JS client decodes it with atob); the signature is `v1,` + base64 of
 * HMAC-SHA256(key, `${webhook-id}.${webhook-timestamp}.${body}`).
 */
import { createHash, createHmac, randomBytes } from "node:crypto";

export function newWebhookSecret(): string {
  return `whsec_${randomBytes(32).toString("base64")}`;
}

/** msg_ and 26 base64url characters; one per message, the same on every retry of it. */
export function newWebhookId(): string {
  return `msg_${randomBytes(20).toString("base64url").slice(0, 26)}`;
}

/**
 * The webhook-id of prediction `predictionId`'s `completed` message: derived from the prediction,
 * so every process, before or after a crash, sends the same id, even when the crash came between
 * a try and its record in the delivery log.
 */
export function completedWebhookId(predictionId: string): string {
  return `msg_${createHash("sha256").update(`completed:${predictionId}`).digest("base64url").slice(0, 26)}`;
}

export function signWebhook(secret: string, id: string, timestamp: number, body: string): string {
  const key = Buffer.from(secret.slice(secret.lastIndexOf("_") + 1), "base64");
  return `v1,${createHmac("sha256", key).update(`${id}.${timestamp}.${body}`).digest("base64")}`;
}
