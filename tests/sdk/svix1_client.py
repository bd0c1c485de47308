"""Drives a running Herald with a first-generation Svix Python SDK (1.x).

Started by tests/svix_sdk.rs with HERALD_URL and HERALD_TOKEN set, in the
virtualenv of tests/sdk/requirements-1x.txt. Covers what this generation
reads differently from the 2.x SDKs: attempts without `msg`, a rotation
answered 204, the attempted-messages and -destinations lists, stats, and
event type patches. Exits non-zero on the first broken expectation.
"""

import os
import time

import receiver
from receiver import received, wait_for_deliveries
from standardwebhooks.webhooks import Webhook
# 1.x names statuses VALUE_0 (success) … VALUE_3.
from svix.api import (
    ApplicationIn,
    EndpointIn,
    EndpointSecretRotateIn,
    EventTypeIn,
    EventTypePatch,
    MessageAttemptListOptions,
    MessageIn,
    MessageStatus,
    Svix,
    SvixOptions,
)

def main():
    url = receiver.start()

    svix = Svix(os.environ["HERALD_TOKEN"], SvixOptions(server_url=os.environ["HERALD_URL"]))

    app = svix.application.create(ApplicationIn(name="SDK 1.x app", uid="sdk1-app"))
    svix.event_type.create(EventTypeIn(name="ticket.created", description="A ticket was opened"))
    patched = svix.event_type.patch("ticket.created", EventTypePatch(description="patched"))
    assert patched.description == "patched", patched

    ep = svix.endpoint.create(app.id, EndpointIn(url=url, description="from SDK 1.x"))
    msg = svix.message.create(app.id, MessageIn(event_type="ticket.created", payload={"ticket": 42}))

    deadline = time.time() + 15
    while True:
        attempts = svix.message_attempt.list_by_endpoint(app.id, ep.id)
        if any(a.status == MessageStatus.VALUE_0 for a in attempts.data):
            break
        assert time.time() < deadline, f"no successful attempt: {attempts}"
        time.sleep(0.05)
    assert attempts.data[0].msg_id == msg.id

    attempted = svix.message_attempt.list_attempted_messages(app.id, ep.id)
    assert [m.id for m in attempted.data] == [msg.id], attempted
    assert attempted.data[0].status == MessageStatus.VALUE_0
    only_failed = svix.message_attempt.list_attempted_messages(
        app.id, ep.id, MessageAttemptListOptions(status=MessageStatus.VALUE_2)
    )
    assert only_failed.data == [], only_failed
    destinations = svix.message_attempt.list_attempted_destinations(app.id, msg.id)
    assert [d.id for d in destinations.data] == [ep.id], destinations

    stats = svix.endpoint.get_stats(app.id, ep.id)
    assert stats.success == 1, stats

    secret = svix.endpoint.get_secret(app.id, ep.id).key
    wait_for_deliveries(1)
    headers, body = received[0]
    assert Webhook(secret).verify(body, headers) == {"ticket": 42}

    assert svix.endpoint.rotate_secret(app.id, ep.id, EndpointSecretRotateIn()) is None
    new_secret = svix.endpoint.get_secret(app.id, ep.id).key
    assert new_secret != secret
    svix.message.create(app.id, MessageIn(event_type="ticket.created", payload={"ticket": 43}))
    wait_for_deliveries(2)
    headers, body = received[1]
    assert Webhook(new_secret).verify(body, headers) == {"ticket": 43}
    assert Webhook(secret).verify(body, headers) == {"ticket": 43}

    svix.endpoint.delete(app.id, ep.id)
    svix.application.delete(app.id)
    print("svix 1.x SDK: every call succeeded and every delivery verified")


if __name__ == "__main__":
    main()
