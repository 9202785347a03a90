"""The credentials of each push provider, read from the environment, and the providers built
from them. A provider whose credentials are not set is not built: targets of its platform can
still be registered, and their pushes are dead-lettered with reason "provider not configured"
(visible in ListDeadLetters) rather than silently dropped."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from chatmesh_common.clock import Clock
from chatmesh_common.settings import ConfigError, environ, read_env, setting, validate

from .apns import PRODUCTION_URL, SANDBOX_URL, ApnsProvider
from .base import Platform, PushProvider
from .fcm import FCM_URL, FcmProvider
from .webhook import WebhookProvider
from .webpush import WebPushProvider


@dataclass(frozen=True)
class ProviderSettings:
    apns_team_id: str = setting("CHATMESH_APNS_TEAM_ID", "", "the Apple developer team id")
    apns_key_id: str = setting("CHATMESH_APNS_KEY_ID", "", "the id of the APNs auth key")
    apns_key_file: str = setting(
        "CHATMESH_APNS_KEY_FILE", "", "the APNs auth key (.p8, ES256); unset: no APNs"
    )
    apns_topic: str = setting("CHATMESH_APNS_TOPIC", "", "the app's bundle id (apns-topic)")
    apns_url: str = setting(
        "CHATMESH_APNS_URL",
        PRODUCTION_URL,
        f"the APNs endpoint ({SANDBOX_URL} for development builds)",
    )
    apns_ca_file: str = setting(
        "CHATMESH_APNS_CA_FILE", "", "a CA bundle to verify the APNs endpoint (default: system)"
    )
    fcm_service_account_file: str = setting(
        "CHATMESH_FCM_SERVICE_ACCOUNT_FILE",
        "",
        "the Firebase service-account JSON key; unset: no FCM",
    )
    fcm_url: str = setting("CHATMESH_FCM_URL", FCM_URL, "the FCM HTTP v1 endpoint")
    fcm_ca_file: str = setting(
        "CHATMESH_FCM_CA_FILE", "", "a CA bundle to verify FCM and the token endpoint"
    )
    vapid_key_file: str = setting(
        "CHATMESH_VAPID_KEY_FILE",
        "",
        "the VAPID P-256 private key (PEM; `python -m notify_service.providers.vapid` makes one);"
        " unset: no Web Push",
    )
    vapid_subject: str = setting(
        "CHATMESH_VAPID_SUBJECT", "", "the VAPID contact (mailto: or https: URL)"
    )
    webpush_allow_http: bool = setting(
        "CHATMESH_WEBPUSH_ALLOW_HTTP", False, "accept http:// push endpoints (local tests only)"
    )
    webhook_secret: str = setting(
        "CHATMESH_WEBHOOK_SECRET",
        "",
        "the HMAC-SHA256 key signing webhook pushes; unset: no webhooks",
        secret=True,
    )
    timeout_s: float = setting(
        "CHATMESH_PUSH_TIMEOUT_S", 10.0, "the longest one provider request may take", positive=True
    )

    def __post_init__(self) -> None:
        validate(self)
        if self.apns_key_file and not (self.apns_team_id and self.apns_key_id and self.apns_topic):
            raise ConfigError(
                "CHATMESH_APNS_KEY_FILE needs CHATMESH_APNS_TEAM_ID, _KEY_ID and _TOPIC"
            )
        if self.vapid_key_file and not self.vapid_subject:
            raise ConfigError("CHATMESH_VAPID_KEY_FILE needs CHATMESH_VAPID_SUBJECT")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ProviderSettings:
        return read_env(cls, dict(environ(env)))


def _read(path: str, setting_name: str) -> str:
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"{setting_name}: cannot read {path}: {exc.strerror}") from exc


def build_providers(settings: ProviderSettings, clock: Clock) -> dict[Platform, PushProvider]:
    """The providers whose credentials are set; a malformed credential is a ConfigError."""
    providers: dict[Platform, PushProvider] = {}
    try:
        if settings.apns_key_file:
            providers[Platform.APNS] = ApnsProvider(
                settings.apns_team_id,
                settings.apns_key_id,
                _read(settings.apns_key_file, "CHATMESH_APNS_KEY_FILE"),
                settings.apns_topic,
                settings.apns_url,
                verify=settings.apns_ca_file or True,
                timeout_s=settings.timeout_s,
                clock=clock,
            )
        if settings.fcm_service_account_file:
            raw = _read(settings.fcm_service_account_file, "CHATMESH_FCM_SERVICE_ACCOUNT_FILE")
            providers[Platform.FCM] = FcmProvider(
                json.loads(raw),
                settings.fcm_url,
                verify=settings.fcm_ca_file or True,
                timeout_s=settings.timeout_s,
                clock=clock,
            )
        if settings.vapid_key_file:
            providers[Platform.WEBPUSH] = WebPushProvider(
                _read(settings.vapid_key_file, "CHATMESH_VAPID_KEY_FILE"),
                settings.vapid_subject,
                timeout_s=settings.timeout_s,
                clock=clock,
                require_https=not settings.webpush_allow_http,
            )
        if settings.webhook_secret:
            providers[Platform.WEBHOOK] = WebhookProvider(
                settings.webhook_secret, timeout_s=settings.timeout_s, clock=clock
            )
    except (ValueError, json.JSONDecodeError) as exc:
        raise ConfigError(f"push provider credentials: {exc}") from exc
    return providers
