"""Where the generations of the `svix` Python SDK spell the same call
differently, so that svix_flow.py runs one product flow through each of them.

- 1.40 and before: the first code generator (`svix.internal`); statuses are
  `VALUE_0`…, attempts take one `MessageAttemptListOptions` (which cannot
  ask for success), models keep payloads as objects of their own.
- From about 1.50: the second generator (`svix.models`), with an options class
  per call and named statuses.
- 2.0: endpoints take `eventTypes` instead of `filterTypes`, `update*`
  became `upsert`/`set_headers`, and reads send `with_content=false` unless
  asked otherwise.
- Later 2.x: a secret rotation answers the new secret.

Each difference is found by looking for the name, not by version number.
"""

from svix import api

CLASSIC = not hasattr(api, "MessageAttemptListByEndpointOptions")

if CLASSIC:
    from svix.api import MessageAttemptListOptions, MessageStatus

    SUCCESS, FAIL = MessageStatus.VALUE_0, MessageStatus.VALUE_2
else:
    from svix.api import MessageAttemptListByEndpointOptions, MessageAttemptListByMsgOptions
    from svix.models import MessageStatus

    SUCCESS, FAIL = MessageStatus.SUCCESS, MessageStatus.FAIL

NAMES = "eventTypes" if "event_types" in getattr(api.EndpointIn, "model_fields", {}) else "filterTypes"


def endpoint_in(url, uid, event_types, description):
    """An EndpointIn subscribed to `event_types`, as this SDK names them."""
    if NAMES == "eventTypes":
        return api.EndpointIn(url=url, uid=uid, event_types=event_types, description=description)
    return api.EndpointIn(url=url, uid=uid, filter_types=event_types, description=description)


def event_types_of(endpoint):
    return list(endpoint.event_types if NAMES == "eventTypes" else endpoint.filter_types)


def replace_event_type(client, name, description, schemas):
    """PUT /event-type/{name}: `update` before 2.0, `upsert` from it."""
    if hasattr(client.event_type, "upsert"):
        return client.event_type.upsert(name, api.EventTypeUpsertIn(description=description, schemas=schemas))
    return client.event_type.update(name, api.EventTypeUpdate(description=description, schemas=schemas))


def set_headers(client, app_id, endpoint_id, headers):
    """PUT /endpoint/{id}/headers: `update_headers` before 2.0."""
    change = getattr(client.endpoint, "set_headers", None) or client.endpoint.update_headers
    change(app_id, endpoint_id, api.EndpointHeadersIn(headers=headers))


def headers_of(out):
    headers = out.headers
    return headers.to_dict() if hasattr(headers, "to_dict") else dict(headers)


def payload_of(message):
    payload = message.payload
    return payload.to_dict() if hasattr(payload, "to_dict") else payload


def message_payload(client, app_id, msg_id, with_content):
    """The payload `message.get` answers when asked `with_content` (`{}`
    when false). 1.40 cannot ask: it gets the payload, Svix's default."""
    if CLASSIC:
        assert with_content
        return payload_of(client.message.get(app_id, msg_id))
    return payload_of(client.message.get(app_id, msg_id, api.MessageGetOptions(with_content=with_content)))


def attempts_by_endpoint(client, app_id, endpoint_id, status=None):
    options = (MessageAttemptListOptions if CLASSIC else MessageAttemptListByEndpointOptions)(status=status)
    return _with_status(client.message_attempt.list_by_endpoint(app_id, endpoint_id, options).data, status)


def attempts_by_msg(client, app_id, msg_id, status=None):
    options = (MessageAttemptListOptions if CLASSIC else MessageAttemptListByMsgOptions)(status=status)
    return _with_status(client.message_attempt.list_by_msg(app_id, msg_id, options).data, status)


def _with_status(attempts, status):
    """1.40 never sends `status=0` (it writes `status.value if status else
    None`, and success is 0), so a 1.40 user filters on success themselves;
    every other status, and every other SDK, is filtered by Herald."""
    if CLASSIC and status == SUCCESS:
        return [a for a in attempts if a.status == SUCCESS]
    return attempts


def rotate(client, app_id, endpoint_id):
    """Rotates the secret; answers the new one. Where this SDK reads the
    answer (later 2.x) it must be the secret that is now in force."""
    answer = client.endpoint.rotate_secret(app_id, endpoint_id, api.EndpointSecretRotateIn())
    key = client.endpoint.get_secret(app_id, endpoint_id).key
    if answer is not None:
        assert answer.key == key, (answer, key)
    return key
