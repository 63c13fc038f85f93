"""``/soap/Notifications``: WaitForNotifications (long-poll), Heartbeat, Subscribe, Unsubscribe.

A notification says that something waits for the caller's agency (a document or status in
its mailbox, or an undeliverable report about one it sent), with identifiers only; the
caller then fetches through DocumentExchange.  ``lastId`` is a cursor: pass it as
``afterId`` next time.  The same notifications stream as server-sent events at ``/events``
(:mod:`esb.soap.events`), and are pushed to a subscribed callback endpoint.  See
docs/notifications.md.
"""

from __future__ import annotations

from typing import Any

from spyne import Boolean, ComplexModel, DateTime, Int, Long, Unicode, rpc

from esb.domain.notifications import Notification as NotificationRecord
from esb.soap.context import request_context, require_caller
from esb.soap.faults import TranslatingService, make_fault_class
from esb.soap.soap_types import auth_header, out

NAMESPACE = "urn:lgsp-esb:notifications:1"
SERVICE = "Notifications"

EsbFault = make_fault_class(NAMESPACE)
AuthHeader = auth_header(NAMESPACE)


class Notification(ComplexModel):  # type: ignore[misc]
    __namespace__ = NAMESPACE
    _type_info = [  # noqa: RUF012
        ("id", out(Long)),  # the cursor
        ("kind", out(Unicode)),  # document | status | undeliverable
        ("hubDocumentId", out(Unicode)),
        ("from", out(Unicode)),
        ("to", out(Unicode, 0)),
        ("messageType", out(Unicode)),  # edoc | status
        ("priority", out(Int)),
        ("detail", out(Unicode, 0)),  # why, for undeliverable reports
        ("at", out(DateTime)),
    ]


class NotificationBatch(ComplexModel):  # type: ignore[misc]
    __namespace__ = NAMESPACE
    _type_info = [  # noqa: RUF012
        ("notification", Notification.customize(min_occurs=0, max_occurs="unbounded", nillable=False)),
        ("lastId", out(Long)),
    ]


class HeartbeatInfo(ComplexModel):  # type: ignore[misc]
    __namespace__ = NAMESPACE
    _type_info = [  # noqa: RUF012
        ("serverTime", out(DateTime)),
        ("state", out(Unicode)),  # the caller's presence: online
        ("lastId", out(Long)),  # newest notification id of the caller's agency
    ]


class Subscription(ComplexModel):  # type: ignore[misc]
    __namespace__ = NAMESPACE
    _type_info = [  # noqa: RUF012
        ("subscribed", out(Boolean)),
        ("callbackUrl", out(Unicode, 0)),
    ]


class NotificationService(TranslatingService):
    fault_class = EsbFault

    @rpc(
        Int(min_occurs=0, nillable=False),
        Long(min_occurs=0, nillable=False),
        _in_header=(AuthHeader,),
        _returns=NotificationBatch.customize(min_occurs=1, nillable=False),
        _throws=[EsbFault],
    )
    def WaitForNotifications(ctx: Any, timeout: int | None, afterId: int | None) -> NotificationBatch:
        """Notifications after ``afterId`` (default 0: every one kept), at once, or as soon as one
        arrives within ``timeout`` seconds (1 to 120, default 30); then none and the same cursor."""
        caller = require_caller(ctx, SERVICE)
        batch = request_context(ctx).services.notifications.wait(caller, afterId, timeout)
        return NotificationBatch(
            notification=[_notification(n) for n in batch.notifications], lastId=batch.last_id
        )

    @rpc(
        _in_header=(AuthHeader,),
        _returns=HeartbeatInfo.customize(min_occurs=1, nillable=False),
        _throws=[EsbFault],
    )
    def Heartbeat(ctx: Any) -> HeartbeatInfo:
        """I am alive (presence): call it when no channel is open, more often than the silence."""
        caller = require_caller(ctx, SERVICE)
        answer = request_context(ctx).services.notifications.heartbeat(caller)
        return HeartbeatInfo(serverTime=answer.server_time, state=answer.state, lastId=answer.last_id)

    @rpc(
        Unicode(min_occurs=1, nillable=False, max_len=1024),
        _in_header=(AuthHeader,),
        _returns=Subscription.customize(min_occurs=1, nillable=False),
        _throws=[EsbFault],
    )
    def Subscribe(ctx: Any, callbackUrl: str) -> Subscription:
        """Receive signed Notify pushes at ``callbackUrl``: it must be the application's registered
        endpoint (Client.CallbackNotRegistered otherwise)."""
        caller = require_caller(ctx, SERVICE)
        url = request_context(ctx).services.notifications.subscribe(caller, callbackUrl)
        return Subscription(subscribed=True, callbackUrl=url)

    @rpc(
        _in_header=(AuthHeader,),
        _returns=Subscription.customize(min_occurs=1, nillable=False),
        _throws=[EsbFault],
    )
    def Unsubscribe(ctx: Any) -> Subscription:
        """No more pushes; those still pending are cancelled."""
        caller = require_caller(ctx, SERVICE)
        request_context(ctx).services.notifications.unsubscribe(caller)
        return Subscription(subscribed=False)


def _notification(record: NotificationRecord) -> Notification:
    values: dict[str, Any] = {
        "id": record.id,
        "kind": record.kind.value,
        "hubDocumentId": record.hub_document_id,
        "from": record.sender,
        "to": record.recipient,
        "messageType": record.message_type,
        "priority": record.priority,
        "detail": record.detail,
        "at": record.at,
    }
    return Notification(**values)
