"""Verifies deliveries Herald made, with implementations other than Herald's.

Reads a JSON list of checks on stdin, each:
  {"kind": "v1", "secret": "whsec_...", "headers": {...}, "body": "..."}
  {"kind": "svix", "secret": "whsec_...", "headers": {...}, "body": "..."}
  {"kind": "body-hmac", "secret": "...", "header": "x-acme-signature",
   "prefix": "sha256=", "encoding": "hex" | "base64", "headers": {...}, "body": "..."}
Standard Webhooks `v1` is checked by the `standardwebhooks` package, the
same under `svix-*` header names by the `svix` package's verifier; a
product's own header by Python's `hmac`. Each check also proves that a
changed body fails, so a verifier that accepts everything cannot pass.
"""

import base64
import hashlib
import hmac
import json
import sys

from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from svix.webhooks import Webhook as SvixWebhook
from svix.webhooks import WebhookVerificationError as SvixVerificationError


def verified_by(hook, refusal, check):
    """Checks with `hook`; a changed body must raise `refusal`."""
    hook.verify(check["body"], check["headers"])
    try:
        hook.verify(check["body"] + " ", check["headers"])
    except refusal:
        return
    raise AssertionError("a changed body still verified")


def verify_v1(check):
    verified_by(Webhook(check["secret"]), WebhookVerificationError, check)


def verify_svix(check):
    verified_by(SvixWebhook(check["secret"]), SvixVerificationError, check)


def body_hmac(secret, body, encoding):
    mac = hmac.new(secret.encode("utf-8"), body.encode("utf-8"), hashlib.sha256).digest()
    return mac.hex() if encoding == "hex" else base64.b64encode(mac).decode()


def verify_body_hmac(check):
    sent = check["headers"][check["header"]]
    prefix = check["prefix"]
    assert sent.startswith(prefix), f"{sent!r} lacks the prefix {prefix!r}"
    expected = body_hmac(check["secret"], check["body"], check["encoding"])
    assert hmac.compare_digest(sent[len(prefix):], expected), f"{sent!r} != {prefix}{expected}"
    changed = body_hmac(check["secret"], check["body"] + " ", check["encoding"])
    assert not hmac.compare_digest(sent[len(prefix):], changed), "a changed body still verified"


def main():
    checks = json.load(sys.stdin)
    assert checks, "nothing to verify"
    for check in checks:
        {"v1": verify_v1, "svix": verify_svix, "body-hmac": verify_body_hmac}[check["kind"]](check)
    print(f"verified {len(checks)}")


if __name__ == "__main__":
    main()
