"""Settings: declared once, read from the environment, validated, listed, documented."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from chat_service.config import ChatConfig
from chatmesh_common.clock import SystemClock
from chatmesh_common.settings import ConfigError, describe, read_env, setting, validate
from chatmesh_launcher.dev import DevOptions, dev_process
from chatmesh_launcher.settings_doc import REGENERATE, SECTIONS, render_markdown
from gateway_ws.config import GatewayConfig
from notify_service.config import NotifyConfig
from presence_service.config import PresenceConfig

DOC = Path(__file__).resolve().parents[2] / "docs" / "settings.md"
SECRET = {"CHATMESH_JWT_SECRET": "s", "CHATMESH_SERVICE_SECRET": "t"}


@dataclass(frozen=True)
class Sample:
    count: int = setting("SAMPLE_COUNT", 3, "a count", minimum=1, maximum=5)
    rate: float = setting("SAMPLE_RATE", 1.5, "a rate", positive=True)
    kind: str = setting("SAMPLE_KIND", "a", "a kind", choices=("a", "b"))
    on: bool = setting("SAMPLE_ON", False, "a switch")
    names: tuple[str, ...] = setting("SAMPLE_NAMES", (), "a list")
    token: str = setting("SAMPLE_TOKEN", "", "a secret", secret=True)

    def __post_init__(self) -> None:
        validate(self)


def test_unset_and_blank_variables_keep_the_defaults() -> None:
    """A variable that is unset or blank leaves the declared default."""
    assert read_env(Sample, {"SAMPLE_COUNT": "  "}) == Sample()


def test_values_are_parsed_by_the_field_type() -> None:
    """int, float, bool, list and str come from the annotation."""
    config = read_env(
        Sample,
        {
            "SAMPLE_COUNT": "4",
            "SAMPLE_RATE": "0.25",
            "SAMPLE_KIND": "b",
            "SAMPLE_ON": "true",
            "SAMPLE_NAMES": "x, y,,",
        },
    )
    assert config == Sample(count=4, rate=0.25, kind="b", on=True, names=("x", "y"))


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SAMPLE_COUNT": "three"}, "SAMPLE_COUNT must be an integer"),
        ({"SAMPLE_COUNT": "0"}, "SAMPLE_COUNT (count) must be at least 1"),
        ({"SAMPLE_COUNT": "6"}, "SAMPLE_COUNT (count) must be at most 5"),
        ({"SAMPLE_RATE": "0"}, "SAMPLE_RATE (rate) must be positive"),
        ({"SAMPLE_KIND": "c"}, "SAMPLE_KIND (kind) must be one of 'a', 'b'"),
        ({"SAMPLE_ON": "maybe"}, "SAMPLE_ON must be true or false"),
    ],
)
def test_a_bad_value_names_its_variable(env: dict[str, str], message: str) -> None:
    """Every refusal names the variable and the rule."""
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_env(Sample, env)


def test_a_config_built_in_code_follows_the_same_rules() -> None:
    """Validation runs on construction, not only when reading the environment."""
    with pytest.raises(ConfigError, match="SAMPLE_COUNT"):
        Sample(count=0)


def test_the_listing_hides_secrets() -> None:
    """`chatmesh config` says whether a secret is set, never its value."""
    rows = {row.env: row for row in describe(Sample, {"SAMPLE_TOKEN": "hunter2"})}
    assert rows["SAMPLE_TOKEN"].current == "(set)"
    assert rows["SAMPLE_COUNT"].current == "3"
    assert rows["SAMPLE_COUNT"].rules == ">= 1; <= 5"


def test_docs_settings_md_is_current() -> None:
    """docs/settings.md is what `chatmesh config --markdown` prints today."""
    assert DOC.read_text() == render_markdown(), (
        f"docs/settings.md is stale: regenerate it with `{REGENERATE}`"
    )


def test_every_variable_is_listed_once_per_process() -> None:
    """No config declares one variable twice (each setting has one declaration)."""
    for _title, _readers, config in SECTIONS:
        names = [row.env for row in describe(config, {})]
        assert len(names) == len(set(names)), config.__name__


# Every limit of SPEC "Limits" the services enforce, with the variable that sets it.
SPEC_LIMITS: list[tuple[type[Any], str, str, str, Any]] = [
    (ChatConfig, "CHATMESH_MAX_BODY_BYTES", "max_body_bytes", "1024", 1024),
    (ChatConfig, "CHATMESH_MAX_GROUP_MEMBERS", "max_group_members", "10", 10),
    (ChatConfig, "CHATMESH_HISTORY_PAGE_DEFAULT", "default_page", "20", 20),
    (ChatConfig, "CHATMESH_HISTORY_PAGE_MAX", "max_page", "500", 500),
    (ChatConfig, "CHATMESH_TOKEN_LEEWAY_S", "token_leeway_s", "2", 2.0),
    (GatewayConfig, "CHATMESH_WS_MAX_FRAME_BYTES", "max_frame_bytes", "1000", 1000),
    (GatewayConfig, "CHATMESH_WS_SEND_RATE_PER_S", "send_rate_per_s", "5", 5.0),
    (GatewayConfig, "CHATMESH_WS_SEND_BURST", "send_burst", "7", 7),
    (GatewayConfig, "CHATMESH_WS_BAD_FRAME_LIMIT", "bad_frame_limit", "3", 3),
    (GatewayConfig, "CHATMESH_WS_BAD_FRAME_WINDOW_S", "bad_frame_window_s", "30", 30.0),
    (GatewayConfig, "CHATMESH_TOKEN_LEEWAY_S", "token_leeway_s", "0", 0.0),
    (PresenceConfig, "CHATMESH_TYPING_PER_SECOND", "typing_per_second", "1", 1.0),
    (PresenceConfig, "CHATMESH_TOKEN_LEEWAY_S", "token_leeway_s", "5", 5.0),
]


@pytest.mark.parametrize(("config", "env", "field", "raw", "value"), SPEC_LIMITS)
def test_every_spec_limit_is_configurable(
    config: Any, env: str, field: str, raw: str, value: Any
) -> None:
    """Each SPEC limit has a variable; its default is the SPEC's."""
    assert getattr(config.from_env({**SECRET, env: raw}), field) == value


def test_the_spec_defaults() -> None:
    """16 KiB bodies, 1,000 members, pages of 50 up to 200, 10 s leeway, 2 typing/s."""
    chat = ChatConfig.from_env(SECRET)
    assert (chat.max_body_bytes, chat.max_group_members) == (16 * 1024, 1000)
    assert (chat.default_page, chat.max_page, chat.token_leeway_s) == (50, 200, 10.0)
    assert PresenceConfig.from_env(SECRET).typing_per_second == 2.0


def test_the_token_leeway_is_at_most_the_spec_maximum() -> None:
    """SPEC: token expiry leeway of at most 10 s."""
    with pytest.raises(ConfigError, match="CHATMESH_TOKEN_LEEWAY_S"):
        ChatConfig.from_env({**SECRET, "CHATMESH_TOKEN_LEEWAY_S": "11"})


@pytest.mark.parametrize(
    ("config", "env", "refused"),
    [
        (ChatConfig, {}, "the SQLite store"),
        (ChatConfig, {"CHATMESH_STORE": "scylla", "CHATMESH_SCYLLA_CONTACT_POINTS": "db"},
         "the in-process bus"),
        (PresenceConfig, {"CHATMESH_BUS": "nats", "CHATMESH_NATS_URLS": "nats://n:4222"},
         "the memory presence backend"),
        (PresenceConfig, {"CHATMESH_REDIS_URL": "redis://r:6379"}, "the in-process bus"),
        (NotifyConfig, {"CHATMESH_BUS": "nats", "CHATMESH_NATS_URLS": "nats://n:4222"},
         "the sqlite notify store"),
        (NotifyConfig, {"CHATMESH_NOTIFY_STORE": "redis", "CHATMESH_REDIS_URL": "redis://r:6379"},
         "the in-process bus"),
    ],
)  # fmt: skip
def test_cluster_mode_refuses_embedded_backends(
    config: Any, env: dict[str, str], refused: str
) -> None:
    """CHATMESH_MODE=cluster: an embedded backend is a configuration error naming it."""
    with pytest.raises(ConfigError, match=f"CHATMESH_MODE=cluster refuses {refused}"):
        config.from_env({**SECRET, "CHATMESH_MODE": "cluster", **env})


def test_cluster_mode_accepts_cluster_backends() -> None:
    """With the shared backends named, cluster mode starts."""
    cluster = {
        **SECRET,
        "CHATMESH_MODE": "cluster",
        "CHATMESH_BUS": "nats",
        "CHATMESH_NATS_URLS": "nats://n:4222",
    }
    chat = ChatConfig.from_env(
        {**cluster, "CHATMESH_STORE": "scylla", "CHATMESH_SCYLLA_CONTACT_POINTS": "db"}
    )
    assert (chat.store, chat.bus) == ("scylla", "nats")
    presence = PresenceConfig.from_env({**cluster, "CHATMESH_REDIS_URL": "redis://r:6379"})
    assert presence.backend == "redis"
    notify = NotifyConfig.from_env(
        {**cluster, "CHATMESH_NOTIFY_STORE": "redis", "CHATMESH_REDIS_URL": "redis://r:6379"}
    )
    assert (notify.store, notify.redis_url, notify.bus) == ("redis", "redis://r:6379", "nats")


def test_the_redis_notify_store_needs_a_url_and_a_lease_above_the_push_timeout() -> None:
    """Without CHATMESH_REDIS_URL, or with a lease a slow provider call outlives, notify stops."""
    redis = {**SECRET, "CHATMESH_NOTIFY_STORE": "redis"}
    with pytest.raises(ConfigError, match="CHATMESH_REDIS_URL"):
        NotifyConfig.from_env(redis)
    with pytest.raises(ConfigError, match="CHATMESH_NOTIFY_LEASE_S"):
        NotifyConfig.from_env(
            {**redis, "CHATMESH_REDIS_URL": "redis://r:6379", "CHATMESH_NOTIFY_LEASE_S": "5"}
        )


def test_dev_refuses_cluster_mode(tmp_path: Path) -> None:
    """`chatmesh dev` runs the embedded backends, so CHATMESH_MODE=cluster stops it."""
    with pytest.raises(ConfigError, match="CHATMESH_MODE=cluster"):
        dev_process(
            DevOptions(data_dir=str(tmp_path)),
            SystemClock(),
            {**SECRET, "CHATMESH_MODE": "cluster"},
        )


def test_nats_settings_are_declared_settings_too() -> None:
    """The CHATMESH_NATS_* group reads and checks like every other (URLs required with nats)."""
    nats = {**SECRET, "CHATMESH_BUS": "nats"}
    with pytest.raises(ConfigError, match="CHATMESH_NATS_URLS is required"):
        ChatConfig.from_env(nats)
    config = ChatConfig.from_env(
        {
            **nats,
            "CHATMESH_NATS_URLS": "nats://a:4222, nats://b:4222",
            "CHATMESH_NATS_STREAM_REPLICAS": "3",
        }
    )
    assert config.nats.urls == ("nats://a:4222", "nats://b:4222")
    assert config.nats.stream_replicas == 3
    with pytest.raises(ConfigError, match="CHATMESH_NATS_STREAM_REPLICAS"):
        PresenceConfig.from_env(
            {**nats, "CHATMESH_NATS_URLS": "nats://a:4222", "CHATMESH_NATS_STREAM_REPLICAS": "6"}
        )
    with pytest.raises(ConfigError, match="CHATMESH_NATS_USER needs CHATMESH_NATS_PASSWORD"):
        ChatConfig.from_env(
            {**nats, "CHATMESH_NATS_URLS": "nats://a:4222", "CHATMESH_NATS_USER": "u"}
        )


def test_scylla_settings_are_declared_settings_too() -> None:
    """CHATMESH_SCYLLA_*: contact points required, replication and consistency checked at start."""
    scylla = {**SECRET, "CHATMESH_STORE": "scylla", "CHATMESH_BUS": "nats"}
    nats = {"CHATMESH_NATS_URLS": "nats://n:4222"}
    with pytest.raises(ConfigError, match="CHATMESH_SCYLLA_CONTACT_POINTS is required"):
        ChatConfig.from_env({**scylla, **nats})
    with pytest.raises(ConfigError, match="CHATMESH_SCYLLA_REPLICATION"):
        ChatConfig.from_env(
            {
                **scylla,
                **nats,
                "CHATMESH_SCYLLA_CONTACT_POINTS": "db",
                "CHATMESH_SCYLLA_REPLICATION": "x",
            }
        )
    config = ChatConfig.from_env(
        {
            **scylla,
            **nats,
            "CHATMESH_SCYLLA_CONTACT_POINTS": "db1, db2",
            "CHATMESH_SCYLLA_CONSISTENCY": "quorum",
            "CHATMESH_SCYLLA_REPLICATION": "SimpleStrategy:1",
        }
    )
    assert config.scylla is not None
    assert config.scylla.contact_points == ("db1", "db2")
    assert config.scylla.consistency == "QUORUM"
    assert config.scylla.replication == {"class": "SimpleStrategy", "replication_factor": 1}
