// verifyWebhook against the Standard Webhooks specification's published test vector (the one
// tests/shared/test_webhooks.py holds the service's signer to), and what it must refuse.
import { describe, expect, it } from "vitest";
import { WebhookVerificationError, verifyWebhook } from "../src/index.js";

const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const body = '{"test": 2432232314}';
const headers = (signature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", id = "msg_p5jXN8AQM9LWM0D4loKWxJek") =>
  new Headers({ "webhook-id": id, "webhook-timestamp": "1614265330", "webhook-signature": signature });

describe("verifyWebhook", () => {
  it("accepts the specification's vector, also among rotated signatures", async () => {
    await verifyWebhook(body, headers(), secret, { nowS: 1614265330 });
    await verifyWebhook(body, headers("v1,bm90IGl0 v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="), secret, { nowS: 1614265330 });
    await verifyWebhook(body, { "Webhook-Id": "msg_p5jXN8AQM9LWM0D4loKWxJek", "Webhook-Timestamp": "1614265330", "Webhook-Signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=" }, secret, { nowS: 1614265330 });
  });

  it("refuses an altered body, another id, a replay and an unsigned delivery", async () => {
    const at = { nowS: 1614265330 };
    await expect(verifyWebhook('{"test": 2432232315}', headers(), secret, at)).rejects.toThrow(WebhookVerificationError);
    await expect(verifyWebhook(body, headers(undefined, "msg_other"), secret, at)).rejects.toThrow(/no signature matches/);
    await expect(verifyWebhook(body, headers(), secret, { nowS: 1614265330 + 301 })).rejects.toThrow(/too old/);
    await expect(verifyWebhook(body, new Headers({ "webhook-id": "x" }), secret, at)).rejects.toThrow(/no webhook-id/);
  });
});
