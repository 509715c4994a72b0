// Webhook deliveries verified in one call, in the Standard Webhooks format (as the service
// signs them: sam2_contract/webhooks.py): `webhook-id`, `webhook-timestamp` and
// `webhook-signature` (`v1,` + base64 HMAC-SHA256 of `<id>.<timestamp>.<body>` under the key
// of your `whsec_` secret; several, space-separated, while a secret is rotated).

import { Sam2Error } from "./errors.js";

/** A delivery that is not the service's: missing headers, another signature, or too old. */
export class WebhookVerificationError extends Sam2Error {
  override name = "WebhookVerificationError";
}

const TOLERANCE_S = 300;

/** Resolves if `body` (the raw request body) with `headers` was signed with `secret` less than
 * five minutes ago; rejects with WebhookVerificationError saying why not. On your server. */
export async function verifyWebhook(
  body: string | Uint8Array,
  headers: Headers | Record<string, string>,
  secret: string,
  options: { nowS?: number } = {},
): Promise<void> {
  const get = (name: string) => (headers instanceof Headers ? headers.get(name) : (Object.entries(headers).find(([k]) => k.toLowerCase() === name)?.[1] ?? null));
  const id = get("webhook-id");
  const stamp = get("webhook-timestamp");
  const offered = get("webhook-signature");
  if (!id || !stamp || !offered) throw new WebhookVerificationError("no webhook-id, webhook-timestamp or webhook-signature header");
  const timestamp = Number(stamp);
  if (!Number.isInteger(timestamp)) throw new WebhookVerificationError("webhook-timestamp is not Unix seconds");
  const now = options.nowS ?? Date.now() / 1000;
  if (Math.abs(now - timestamp) > TOLERANCE_S) throw new WebhookVerificationError("webhook-timestamp is more than five minutes from now: too old or too new");
  const expected = await sign(secret, id, timestamp, typeof body === "string" ? new TextEncoder().encode(body) : body);
  if (!offered.split(" ").some((candidate) => same(candidate, expected))) {
    throw new WebhookVerificationError("no signature matches: another secret, or an altered body");
  }
}

/** The `webhook-signature` value of one delivery. */
export async function sign(secret: string, id: string, timestamp: number, body: Uint8Array): Promise<string> {
  let key: Uint8Array;
  try {
    key = Uint8Array.from(atob(secret.replace(/^whsec_/, "")), (c) => c.charCodeAt(0));
  } catch {
    throw new WebhookVerificationError("the secret is not whsec_ and base64");
  }
  const prefix = new TextEncoder().encode(`${id}.${timestamp}.`);
  const signed = new Uint8Array(prefix.length + body.length);
  signed.set(prefix);
  signed.set(body, prefix.length);
  const hmac = await crypto.subtle.importKey("raw", key as Uint8Array<ArrayBuffer>, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const digest = new Uint8Array(await crypto.subtle.sign("HMAC", hmac, signed));
  return `v1,${btoa(String.fromCharCode(...digest))}`;
}

/** Equal strings, compared in time that does not depend on where they differ. */
function same(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i += 1) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}
