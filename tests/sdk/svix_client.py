"""Drives a running Herald with the official Svix Python SDK.

Started by tests/svix_sdk.rs with HERALD_URL and HERALD_TOKEN set. Runs its
own receiver on loopback and verifies every delivery with the
`standardwebhooks` package, exactly as a consumer would. Exits non-zero on
the first broken expectation.
"""

import os
import time

import receiver
from receiver import received, wait_for_deliveries
from standardwebhooks.webhooks import Webhook
from svix.api import (
    ApplicationIn,
    EndpointIn,
    EndpointPatch,
    EndpointSecretRotateIn,
    EventTypeIn,
    EventTypePatch,
    MessageAttemptListAttemptedMessagesOptions,
    MessageAttemptListByEndpointOptions,
    MessageIn,
    MessageListOptions,
    Svix,
    SvixOptions,
)
from svix.models import MessageStatus

def main():
    url = receiver.start()

    svix = Svix(os.environ["HERALD_TOKEN"], SvixOptions(server_url=os.environ["HERALD_URL"]))

    app = svix.application.create(ApplicationIn(name="SDK app", uid="sdk-app", metadata={"plan": "pro"}))
    same = svix.application.get_or_create(ApplicationIn(name="SDK app", uid="sdk-app"))
    assert same.id == app.id, (same, app)
    assert svix.application.get("sdk-app").id == app.id

    svix.event_type.create(EventTypeIn(name="ticket.created", description="A ticket was opened"))
    assert [e.name for e in svix.event_type.list().data] == ["ticket.created"]

    ep = svix.endpoint.create(
        app.id, EndpointIn(url=url, event_types=["ticket.created"], description="from the SDK")
    )
    assert ep.event_types == ["ticket.created"], ep
    ep = svix.endpoint.patch(app.id, ep.id, EndpointPatch(description="patched"))
    assert ep.description == "patched"
    assert [e.id for e in svix.endpoint.list(app.id).data] == [ep.id]

    msg = svix.message.create(app.id, MessageIn(event_type="ticket.created", payload={"ticket": 42}))
    assert svix.message.get(app.id, msg.id).payload == {"ticket": 42}
    listed = svix.message.list(app.id, MessageListOptions(event_types=["ticket.created"]))
    assert [m.id for m in listed.data] == [msg.id]

    deadline = time.time() + 15
    while True:
        attempts = svix.message_attempt.list_by_endpoint(app.id, ep.id)
        if any(a.status == MessageStatus.SUCCESS for a in attempts.data):
            break
        assert time.time() < deadline, f"no successful attempt: {attempts}"
        time.sleep(0.05)
    only_success = svix.message_attempt.list_by_endpoint(
        app.id, ep.id, MessageAttemptListByEndpointOptions(status=MessageStatus.SUCCESS)
    )
    assert len(only_success.data) == 1 and only_success.data[0].msg_id == msg.id

    attempted = svix.message_attempt.list_attempted_messages(app.id, ep.id)
    assert [m.id for m in attempted.data] == [msg.id], attempted
    assert attempted.data[0].status == MessageStatus.SUCCESS
    only_failed = svix.message_attempt.list_attempted_messages(
        app.id, ep.id, MessageAttemptListAttemptedMessagesOptions(status=MessageStatus.FAIL)
    )
    assert only_failed.data == [], only_failed
    destinations = svix.message_attempt.list_attempted_destinations(app.id, msg.id)
    assert [d.id for d in destinations.data] == [ep.id], destinations
    stats = svix.endpoint.get_stats(app.id, ep.id)
    assert stats.success == 1 and stats.canceled == 0, stats
    patched = svix.event_type.patch("ticket.created", EventTypePatch(description="patched"))
    assert patched.description == "patched", patched

    secret = svix.endpoint.get_secret(app.id, ep.id).key
    wait_for_deliveries(1)
    headers, body = received[0]
    assert Webhook(secret).verify(body, headers) == {"ticket": 42}
    assert headers["webhook-id"] == msg.id

    svix.message_attempt.resend(app.id, msg.id, ep.id)
    wait_for_deliveries(2)
    headers, body = received[1]
    assert Webhook(secret).verify(body, headers) == {"ticket": 42}
    assert headers["webhook-id"] == msg.id

    # After a rotation the consumer may verify with either secret.
    new_secret = svix.endpoint.rotate_secret(app.id, ep.id, EndpointSecretRotateIn()).key
    assert new_secret != secret
    svix.message.create(app.id, MessageIn(event_type="ticket.created", payload={"ticket": 43}))
    wait_for_deliveries(3)
    headers, body = received[2]
    assert Webhook(new_secret).verify(body, headers) == {"ticket": 43}
    assert Webhook(secret).verify(body, headers) == {"ticket": 43}

    svix.endpoint.delete(app.id, ep.id)
    svix.application.delete(app.id)
    print("svix SDK: every call succeeded and every delivery verified")


if __name__ == "__main__":
    main()
