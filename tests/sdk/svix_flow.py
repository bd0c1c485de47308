"""Drives a running Herald through the product flow with the official Svix
Python SDK, whichever generation the virtualenv holds (svix_generations.py
spells the calls that differ).

Started by tests/svix_sdk.rs with HERALD_URL and HERALD_TOKEN set. Runs its
own receiver on loopback and verifies every delivery with the
`standardwebhooks` package, as a consumer would. Exits non-zero on the first
broken expectation; the last line says which SDK passed.
"""

import os
import time
from datetime import datetime, timezone

import receiver
import svix
import svix_generations as gen
from receiver import received, refused, wait_for_deliveries
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from svix.api import (
    AppPortalAccessIn,
    ApplicationIn,
    ApplicationListOptions,
    EventExampleIn,
    EventTypeIn,
    EventTypePatch,
    MessageIn,
    MessageListOptions,
    RecoverIn,
    Svix,
    SvixOptions,
)
from svix.exceptions import HttpError

EXAMPLE = {"ticket": 7, "subject": "An example ticket"}


def wait_until(fetch, done):
    """Polls `fetch` until `done` holds for its answer (15 s at most)."""
    deadline = time.time() + 15
    while True:
        got = fetch()
        if done(got):
            return got
        assert time.time() < deadline, f"condition not met in time; last answer: {got}"
        time.sleep(0.05)


def verify(delivery, msg_id, payload, *secrets):
    """The delivery is message `msg_id` carrying `payload`, signed with each of `secrets`."""
    headers, body = delivery
    assert headers["webhook-id"] == msg_id, (headers, msg_id)
    for secret in secrets:
        assert Webhook(secret).verify(body, headers) == payload, body
    try:
        Webhook(secrets[0]).verify(body + b" ", headers)
    except WebhookVerificationError:
        return
    raise AssertionError("a changed body still verified")


def expect_status(status, call, *args):
    try:
        call(*args)
    except HttpError as e:
        assert e.status_code == status, (e.status_code, status)
        return
    raise AssertionError(f"{call.__name__}{args} did not fail with {status}")


def applications(client):
    """Five customers with uids, listed two at a time by following the iterator."""
    apps = [client.application.create(ApplicationIn(name=f"Customer {i}", uid=f"customer-{i}")) for i in range(5)]
    assert client.application.get_or_create(ApplicationIn(name="Customer 0", uid="customer-0")).id == apps[0].id
    assert client.application.get("customer-3").id == apps[3].id
    listed, iterator, pages = [], None, 0
    while True:
        page = client.application.list(ApplicationListOptions(limit=2, iterator=iterator))
        listed += [a.id for a in page.data]
        pages += 1
        if page.done:
            break
        iterator = page.iterator
    assert sorted(listed) == sorted(a.id for a in apps) and pages == 3, (listed, pages)
    return apps[0]


def event_types(client):
    client.event_type.create(EventTypeIn(name="ticket.created", description="A ticket was opened"))
    client.event_type.create(EventTypeIn(name="ticket.closed", description="A ticket was closed"))
    assert sorted(e.name for e in client.event_type.list().data) == ["ticket.closed", "ticket.created"]
    schemas = {"1": {"type": "object", "examples": [EXAMPLE]}}
    gen.replace_event_type(client, "ticket.created", "Opened by a customer", schemas)
    assert client.event_type.get("ticket.created").description == "Opened by a customer"
    patched = client.event_type.patch("ticket.closed", EventTypePatch(description="Closed by support"))
    assert patched.description == "Closed by support", patched


def main():
    url = receiver.start()
    base, token = os.environ["HERALD_URL"], os.environ["HERALD_TOKEN"]
    client = Svix(token, SvixOptions(server_url=base))
    started = datetime.now(timezone.utc)

    app = applications(client)
    event_types(client)

    ep = client.endpoint.create(app.id, gen.endpoint_in(url, "tickets", ["ticket.created"], "Ticket events"))
    assert gen.event_types_of(ep) == ["ticket.created"], ep
    assert client.endpoint.get(app.id, "tickets").id == ep.id
    gen.set_headers(client, app.id, ep.id, {"X-Customer": "acme"})
    assert gen.headers_of(client.endpoint.get_headers(app.id, ep.id)) == {"X-Customer": "acme"}
    secret = client.endpoint.get_secret(app.id, ep.id).key

    # One message the endpoint wants, one it filtered out.
    created = client.message.create(app.id, MessageIn(event_type="ticket.created", payload={"ticket": 42}))
    closed = client.message.create(app.id, MessageIn(event_type="ticket.closed", payload={"ticket": 42}))
    wait_for_deliveries(1)
    verify(received[0], created.id, {"ticket": 42}, secret)
    assert received[0][0]["x-customer"] == "acme", received[0][0]

    assert gen.message_payload(client, app.id, created.id, True) == {"ticket": 42}
    if not gen.CLASSIC:
        assert gen.message_payload(client, app.id, created.id, False) == {}
    assert [m.id for m in client.message.list(app.id).data] == [closed.id, created.id]
    only_closed = client.message.list(app.id, MessageListOptions(event_types=["ticket.closed"]))
    assert [m.id for m in only_closed.data] == [closed.id]

    ok = wait_until(lambda: gen.attempts_by_endpoint(client, app.id, ep.id, gen.SUCCESS), lambda a: a)
    assert [a.msg_id for a in ok] == [created.id], ok
    assert [a.endpoint_id for a in gen.attempts_by_msg(client, app.id, created.id, gen.SUCCESS)] == [ep.id]
    assert gen.attempts_by_msg(client, app.id, created.id, gen.FAIL) == []
    assert gen.attempts_by_msg(client, app.id, closed.id) == []

    # A delivery the receiver refuses until it fails for good, then recovered.
    receiver.refusing.set()
    failing = client.message.create(app.id, MessageIn(event_type="ticket.created", payload={"ticket": 43}))
    stats = wait_until(lambda: client.endpoint.get_stats(app.id, ep.id), lambda s: s.fail == 1)
    assert (stats.success, stats.pending, stats.sending) == (1, 0, 0), stats
    assert getattr(stats, "canceled", 0) == 0, stats  # read from about 1.90 on
    receiver.refusing.clear()
    assert refused and all(h["webhook-id"] == failing.id for h, _ in refused)
    failed = gen.attempts_by_endpoint(client, app.id, ep.id, gen.FAIL)
    assert failed and {a.msg_id for a in failed} == {failing.id}, failed
    assert gen.attempts_by_msg(client, app.id, failing.id, gen.SUCCESS) == []
    task = client.endpoint.recover(app.id, ep.id, RecoverIn(since=started))
    assert task.id, task
    wait_for_deliveries(2)
    verify(received[1], failing.id, {"ticket": 43}, secret)

    # After a rotation deliveries verify with the new secret (and the old
    # one through the grace period).
    new_secret = gen.rotate(client, app.id, ep.id)
    assert new_secret != secret
    after = client.message.create(app.id, MessageIn(event_type="ticket.created", payload={"ticket": 44}))
    wait_for_deliveries(3)
    verify(received[2], after.id, {"ticket": 44}, new_secret, secret)

    client.message_attempt.resend(app.id, created.id, ep.id)
    wait_for_deliveries(4)
    verify(received[3], created.id, {"ticket": 42}, new_secret)

    example = client.endpoint.send_example(app.id, ep.id, EventExampleIn(event_type="ticket.created"))
    wait_for_deliveries(5)
    verify(received[4], example.id, EXAMPLE, new_secret)

    # Every delivery carried the endpoint's headers; the filtered-out message never came.
    assert all(h.get("x-customer") == "acme" for h, _ in received)
    assert closed.id not in {h["webhook-id"] for h, _ in received + refused}

    access = client.authentication.app_portal_access(app.id, AppPortalAccessIn())
    assert access.url.startswith("http") and access.token, access
    portal = Svix(access.token, SvixOptions(server_url=base))
    assert [e.id for e in portal.endpoint.list(app.id).data] == [ep.id]

    client.endpoint.delete(app.id, ep.id)
    expect_status(404, client.endpoint.get, app.id, ep.id)
    client.application.delete(app.id)
    expect_status(404, client.application.get, app.id)
    print(f"svix {svix.__version__}: every call succeeded and every delivery verified")


if __name__ == "__main__":
    main()
