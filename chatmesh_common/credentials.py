"""Which credential every RPC of every chatmesh service requires: the one table.

`USER`: a user token; the call acts as that user. `service(scope)`: a service token carrying the
scope; the call is made by a chatmesh service on no user's behalf (internal-only RPCs). `either`:
a user token, or a service token with the scope. `PER_STREAM`: the call carries no credential of
its own; each stream it opens carries a user token, checked as `USER` for that stream alone
(EventService.SubscribeEventsMultiplexed, one call for many devices). The servicer wrappers of
chatmesh_common.rpc look every call up here; a method missing from the table is refused
(INTERNAL), and a test enumerates the proto descriptors so that no RPC is added without its
entry.

A valid token of the wrong kind is PERMISSION_DENIED, like a service token without the scope: the
caller is known but may not make the call. No, bad or expired tokens are UNAUTHENTICATED.
docs/identity.md explains the kinds.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass


class Kind(enum.Enum):
    USER = "user"
    SERVICE = "service"
    EITHER = "either"
    PER_STREAM = "per_stream"


@dataclass(frozen=True, slots=True)
class Requirement:
    kind: Kind
    # The scope a service token must carry (SERVICE and EITHER).
    scope: str = ""

    def describe(self) -> str:
        if self.kind is Kind.USER:
            return "a user token"
        if self.kind is Kind.SERVICE:
            return f"a service token with scope {self.scope}"
        if self.kind is Kind.PER_STREAM:
            return "a user token in each stream it opens"
        return f"a user token or a service token with scope {self.scope}"


USER = Requirement(Kind.USER)
PER_STREAM = Requirement(Kind.PER_STREAM)


def service(scope: str) -> Requirement:
    return Requirement(Kind.SERVICE, scope)


def either(scope: str) -> Requirement:
    return Requirement(Kind.EITHER, scope)


# Scopes: what a service token lets its holder ask. Named <owning service>.<what>.
# Membership, block and audience questions answered by chat_service (presence_service asks them).
SCOPE_CHAT_ACCESS = "chat.access"
# Whether users have an online device, invisible ones included (notify_service asks it).
SCOPE_PRESENCE_ONLINE = "presence.online"
# Operating notify_service: listing and replaying dead-lettered pushes.
SCOPE_NOTIFY_ADMIN = "notify.admin"
# Checking and describing the media a sender attaches (chat_service asks media_service).
SCOPE_MEDIA_ATTACH = "media.attach"
# Moderating chat: the report queue, deletes, removals, bans and suspensions in any conversation.
SCOPE_CHAT_MODERATE = "chat.moderate"

# Full service name -> method name -> requirement.
RPC_CREDENTIALS: Mapping[str, Mapping[str, Requirement]] = {
    "chatmesh.chat.v1.ChatService": {
        "CreateConversation": USER,
        "GetConversation": USER,
        "ListConversations": USER,
        "UpdateConversation": USER,
        "ListMembers": USER,
        "AddMembers": USER,
        "RemoveMember": USER,
        "SetMemberRole": USER,
        "LeaveConversation": USER,
        "UpdateMemberSettings": USER,
        "SendMessage": USER,
        "EditMessage": USER,
        "DeleteMessage": USER,
        "GetHistory": USER,
        "MarkRead": USER,
        "MarkDelivered": USER,
        "BlockUser": USER,
        "UnblockUser": USER,
        "ListBlockedUsers": USER,
        "ReportMessage": USER,
        "ReportUser": USER,
    },
    "chatmesh.moderation.v1.ModerationService": {
        "ListReports": service(SCOPE_CHAT_MODERATE),
        "ResolveReport": service(SCOPE_CHAT_MODERATE),
        "DeleteMessage": service(SCOPE_CHAT_MODERATE),
        "RemoveMember": service(SCOPE_CHAT_MODERATE),
        "BanMember": service(SCOPE_CHAT_MODERATE),
        "UnbanMember": service(SCOPE_CHAT_MODERATE),
        "SuspendUser": service(SCOPE_CHAT_MODERATE),
        "UnsuspendUser": service(SCOPE_CHAT_MODERATE),
        "ListHeld": service(SCOPE_CHAT_MODERATE),
        "ReleaseHeld": service(SCOPE_CHAT_MODERATE),
        "DropHeld": service(SCOPE_CHAT_MODERATE),
    },
    "chatmesh.events.v1.EventService": {
        "SubscribeEvents": USER,
        "SubscribeEventsMultiplexed": PER_STREAM,
    },
    "chatmesh.chat.v1.AccessService": {
        "FilterPresenceAudience": service(SCOPE_CHAT_ACCESS),
        "CheckTypingAudience": service(SCOPE_CHAT_ACCESS),
        "ListSearchableConversations": service(SCOPE_CHAT_ACCESS),
        "GetSearchHits": service(SCOPE_CHAT_ACCESS),
        "GetPushAudience": service(SCOPE_CHAT_ACCESS),
        "GetUnreadTotals": service(SCOPE_CHAT_ACCESS),
        "CheckMembership": service(SCOPE_CHAT_ACCESS),
        "CheckUserActive": service(SCOPE_CHAT_ACCESS),
    },
    "chatmesh.presence.v1.PresenceService": {
        "Connect": USER,
        "Heartbeat": USER,
        "Disconnect": USER,
        "SetStatus": USER,
        "GetPresence": USER,
        "Watch": USER,
        "SendTyping": USER,
        "GetOnlineUsers": service(SCOPE_PRESENCE_ONLINE),
    },
    "chatmesh.search.v1.SearchService": {
        "Search": USER,
    },
    "chatmesh.notify.v1.NotifyService": {
        "RegisterDevice": USER,
        "UnregisterDevice": USER,
        "ListDevices": USER,
        "GetNotificationSettings": USER,
        "UpdateNotificationSettings": USER,
        "ListDeadLetters": service(SCOPE_NOTIFY_ADMIN),
        "ReplayDeadLetter": service(SCOPE_NOTIFY_ADMIN),
    },
    "chatmesh.media.v1.MediaService": {
        "CreateUpload": USER,
        "CompleteUpload": USER,
        "GetMedia": USER,
        "GetDownloadUrl": USER,
        "ResolveAttachments": service(SCOPE_MEDIA_ATTACH),
    },
}


def requirement(service_name: str, method: str) -> Requirement | None:
    """The credential `/<service_name>/<method>` requires; None when the table lacks it."""
    return RPC_CREDENTIALS.get(service_name, {}).get(method)
