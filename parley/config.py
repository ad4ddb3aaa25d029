"""Settings of one Parley process, read once from the environment and the command line."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from parley.limits import UPLOAD_MIME_DEFAULT, Limits


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw else default


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw else default


def _env_opt_int(name: str) -> int | None:
    raw = os.environ.get(name)
    return int(raw) if raw else None


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if not raw:
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be true or false, not {raw!r}")


def _env_strings(name: str) -> tuple[str, ...]:
    """A comma-separated list kept as written (URLs: their case and query matter)."""
    return tuple(x.strip() for x in os.environ.get(name, "").split(",") if x.strip())


def _env_list(name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    raw = os.environ.get(name)
    return tuple(x.strip().lower() for x in raw.split(",") if x.strip()) if raw else default


@dataclass(frozen=True)
class S3Settings:
    """Where attachments go when scaled out; credentials come from boto3's usual chain
    (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, a profile, or the pod's role)."""

    bucket: str
    #: None = AWS itself; a URL for MinIO, SeaweedFS, Ceph and other S3-compatible servers.
    endpoint: str | None = None
    region: str | None = None
    #: Where clients reach the same server, when that is not `endpoint` (an in-cluster service
    #: name for the pods, a public host name for the apps): the presigned URLs name this one.
    public_endpoint: str | None = None

    @classmethod
    def from_env(cls) -> "S3Settings | None":
        bucket = os.environ.get("PARLEY_S3_BUCKET")
        if not bucket:
            return None
        return cls(bucket, os.environ.get("PARLEY_S3_ENDPOINT") or None, os.environ.get("PARLEY_S3_REGION") or None,
                   os.environ.get("PARLEY_S3_PUBLIC_ENDPOINT") or None)


def parse_hosts(raw: str, default_port: int = 9042) -> tuple[tuple[str, ...], int]:
    """`h1,h2:9043` -> ((h1, h2), 9043): the driver takes one port for the whole cluster."""
    hosts, ports = [], set()
    for item in (x.strip() for x in raw.split(",")):
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        if sep and port.isdigit() and host:
            hosts.append(host)
            ports.add(int(port))
        else:
            hosts.append(item)
    if len(ports) > 1:
        raise ValueError(f"every Cassandra host must use one port, got {sorted(ports)}")
    return tuple(hosts), ports.pop() if ports else default_port


def _check_kafka_durability(replication_factor: int, min_insync_replicas: int | None) -> None:
    """More in-sync replicas than copies can never be met: every acks=all publish would fail
    (NotEnoughReplicas), so the process refuses to start instead."""
    if replication_factor < 1:
        raise ValueError(f"PARLEY_KAFKA_REPLICATION_FACTOR must be at least 1, not {replication_factor}")
    if min_insync_replicas is not None and not 1 <= min_insync_replicas <= replication_factor:
        raise ValueError(f"PARLEY_KAFKA_MIN_INSYNC_REPLICAS must be between 1 and PARLEY_KAFKA_REPLICATION_FACTOR "
                         f"({replication_factor}), not {min_insync_replicas}")


@dataclass(frozen=True)
class SessionLifetimes:
    """How long a login lasts, and how soon every gateway learns that one ended."""

    #: A refresh token's lifetime; each refresh starts a new one, so a login unused this long ends.
    refresh_ttl_s: int = 30 * 24 * 3600
    #: How often each gateway reads the revocation log (what processes without a bus revoke).
    revocation_poll_s: float = 2.0

    @classmethod
    def from_env(cls, token_ttl_s: int) -> "SessionLifetimes":
        lifetimes = cls(refresh_ttl_s=_env_int("PARLEY_REFRESH_TTL_S", cls.refresh_ttl_s),
                        revocation_poll_s=_env_float("PARLEY_REVOCATION_POLL_S", cls.revocation_poll_s))
        if token_ttl_s < 1:
            raise ValueError(f"PARLEY_TOKEN_TTL_S must be at least 1, not {token_ttl_s}")
        if lifetimes.refresh_ttl_s <= token_ttl_s:
            raise ValueError(f"PARLEY_REFRESH_TTL_S ({lifetimes.refresh_ttl_s}) must be longer than "
                             f"PARLEY_TOKEN_TTL_S ({token_ttl_s})")
        if lifetimes.revocation_poll_s <= 0:
            raise ValueError(f"PARLEY_REVOCATION_POLL_S must be positive, not {lifetimes.revocation_poll_s}")
        return lifetimes


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path(".parley")
    #: Configured signing key (PARLEY_JWT_SECRET); None = generated into the data dir.
    jwt_secret: bytes | None = None
    #: An access token's lifetime: a client refreshes it (rotating refresh tokens) before it ends.
    token_ttl_s: int = 15 * 60
    sessions: SessionLifetimes = field(default_factory=SessionLifetimes)
    #: SQLite `synchronous`: FULL survives power loss, NORMAL (WAL) only process crashes.
    sqlite_synchronous: str = "FULL"
    limits: Limits = field(default_factory=Limits)
    #: Conversations with at least this many members get each event published once on their
    #: own bus subject instead of once per gateway (0: never). At least 3, so that a direct
    #: chat (2 members) never is one: a gateway looks at its users' groups and channels only.
    conv_subject_min_members: int = 1000
    # ---- scale-out (`parley run ROLE`, `parley up`) ---------------------------------------
    kafka_bootstrap: str = "127.0.0.1:9092"
    #: Partitions of the command and event topics; also the outbox shards. Fixed per deployment.
    kafka_partitions: int = 8
    #: Copies of each partition of the topics a role creates. 1 suits tansu (one broker: tests,
    #: `parley up`); on a Kafka cluster 1 means a broker's loss loses acknowledged records.
    kafka_replication_factor: int = 1
    #: The topics' `min.insync.replicas` (None: the broker's default). acks=all waits for this
    #: many copies, so RF 3 with 2 keeps taking writes through one broker's loss, losing none.
    kafka_min_insync_replicas: int | None = None
    #: The idempotent producer: on for real Kafka; tansu (tests, `parley up`) cannot do it.
    kafka_idempotence: bool = True
    #: How long a fetch may wait for records. Kafka answers as soon as a record arrives, so this
    #: only bounds idle polling; tansu (`parley up`) waits it out every time (measured: p50
    #: 127 ms of added latency at 500, 8 ms at 25), so `parley up` sets it low.
    kafka_fetch_max_wait_ms: int = 500
    #: Consumers commit the offsets of durable batches at most this often (and when idle or
    #: stopping): a crash replays up to this much, which idempotency makes harmless.
    kafka_commit_interval_ms: int = 200
    nats_url: str = "nats://127.0.0.1:4222"
    redis_url: str = "redis://127.0.0.1:6379/0"
    #: This gateway's id on the bus (NATS subject, presence); default: random per process.
    gateway_id: str | None = None
    #: Share the port with other gateways on this host (SO_REUSEPORT), as `parley up` does.
    reuse_port: bool = False
    #: A second port of this process's own, serving the same routes (for `/metrics` and the probes
    #: of processes that share the client port: Prometheus must reach each one).
    metrics_port: int | None = None
    #: After the drain, how long the HTTP server waits for open requests before closing them.
    shutdown_timeout_s: float = 10.0
    #: None = attachments in a directory of the data dir, served by the gateway itself.
    s3: S3Settings | None = None
    #: The message store: "sqlite" (embedded, under data_dir) or "cassandra".
    store: str = "sqlite"
    cassandra_hosts: tuple[str, ...] = ()
    cassandra_port: int = 9042
    cassandra_keyspace: str = "parley"
    cassandra_dc: str = "datacenter1"
    #: Replicas per datacenter when `parley migrate` creates the keyspace.
    cassandra_rf: int = 3
    cassandra_username: str | None = None
    cassandra_password: str | None = None
    cassandra_idempotency_ttl_s: int = 7 * 86400
    cassandra_outbox_ttl_s: int = 7 * 86400
    #: The instance policy as JSON (moderation.policy.InstancePolicy.from_json); None: built-in.
    policy_json: str | None = None
    #: How often chat_core re-reads the conversation defaults admins change at run time.
    policy_refresh_s: float = 10.0
    #: How often the outbox relay records what it published (and, on SQLite, drops those rows):
    #: longer means more replay after a crash, never a lost event.
    relay_checkpoint_s: float = 0.5
    #: `module:attr` of a content filter (moderation/filters.py); None: the word list, if any.
    content_filter: str | None = None
    #: The built-in word-list filter's words and what it does with a match.
    filter_words: tuple[str, ...] = ()
    filter_action: str = "reject"
    # ---- calls (calls/): LiveKit for the media, STUN/TURN for the paths ---------------------
    #: Calls are on when all three are set (the LiveKit URL clients connect to, e.g. wss://...).
    livekit_url: str | None = None
    livekit_api_key: str | None = None
    livekit_api_secret: str | None = None
    stun_urls: tuple[str, ...] = ()
    #: TURN URLs (turn:/turns:) handed out with credentials in coturn's REST scheme.
    turn_urls: tuple[str, ...] = ()
    #: coturn's `static-auth-secret`: the credentials are HMACs of it.
    turn_secret: str | None = None
    #: TURN credentials must outlive the longest call: a relay's refreshes use the same ones.
    turn_ttl_s: int = 86400
    call_ring_timeout_s: int = 45
    call_token_ttl_s: int = 600
    #: Participants per call, unless the conversation says otherwise (and in the room's config).
    call_max_participants: int = 32
    #: Video tracks a client subscribes to at most in a call, unless the conversation says otherwise.
    call_max_video_subscriptions: int = 9
    #: How often the calls role sweeps the rooms of calls active for `call_sweep_grace_s`, for the
    #: webhooks LiveKit lost (a call would stay live, its members busy): one ListRooms per sweep,
    #: one ListParticipants and one command per such call. A session missing from two sweeps in
    #: a row has left; a room gone ends its call.
    call_sweep_interval_s: int = 60
    call_sweep_grace_s: int = 120
    # ---- push (push/) -----------------------------------------------------------------------
    #: FCM: the Firebase service account's JSON key file; None: no FCM.
    fcm_credentials: Path | None = None
    #: APNs token authentication: the .p8 signing key, its key id, the team id and the app's
    #: bundle id (the topic; VoIP pushes go to `<topic>.voip`). All four or none.
    apns_key: Path | None = None
    apns_key_id: str | None = None
    apns_team_id: str | None = None
    apns_topic: str | None = None
    #: Apple's development environment (apps signed for development) instead of production.
    apns_sandbox: bool = False
    #: Where to send instead of the providers' own hosts (an egress proxy, or the test stand-ins):
    #: FCM's base URL, and APNs' host:port. None: Google's and Apple's.
    fcm_endpoint: str | None = None
    apns_endpoint: str | None = None
    #: The longest wait for a provider's answer to one send (an APNs send can wait forever).
    push_send_timeout_s: float = 10.0
    #: Sends of one push in all, the first included, before it is dead-lettered.
    push_retry_attempts: int = 5
    #: `parley admin loadtest-users` may create accounts in bulk (PARLEY_ALLOW_LOADTEST_USERS=1):
    #: off by default, for load-test instances only (docs/loadtesting.md).
    allow_loadtest_users: bool = False
    #: A member with a live session that read the conversation this recently is looking at it:
    #: no push (issue 14; Mattermost uses the same idea).
    push_looking_window_s: float = 20.0
    #: Message pushes per device per minute at most; more in a minute are dropped (a later push
    #: of the conversation replaces them on the phone anyway). Calls and clears are never dropped.
    push_device_per_minute: int = 30
    #: How long a sent push is remembered by (device, conversation, seq, kind), so that a worker
    #: that restarts mid-batch does not send it again.
    push_dedup_ttl_s: int = 86400
    #: With tracing on (OTEL_* variables), also trace Redis commands, Kafka sends and CQL queries
    #: (PARLEY_TRACE_CLIENTS): as children of sampled requests only (parley/tracing.py); off by
    #: default, since each instrumented call costs CPU, sampled or not (docs/benchmarks.md).
    trace_clients: bool = False

    @property
    def push_configured(self) -> bool:
        """Either provider has credentials (from_env refuses half an APNs configuration)."""
        return self.fcm_credentials is not None or self.apns_key is not None

    @classmethod
    def from_env(cls, **overrides: object) -> "Settings":
        secret = os.environ.get("PARLEY_JWT_SECRET")
        d = Limits()
        limits = Limits(
            max_frame_bytes=_env_int("PARLEY_MAX_FRAME_BYTES", d.max_frame_bytes),
            max_text_chars=_env_int("PARLEY_MAX_TEXT_CHARS", d.max_text_chars),
            heartbeat_s=_env_int("PARLEY_HEARTBEAT_S", d.heartbeat_s),
            hello_timeout_s=_env_float("PARLEY_HELLO_TIMEOUT_S", d.hello_timeout_s),
            max_handshakes_per_ip=_env_int("PARLEY_MAX_HANDSHAKES_PER_IP", d.max_handshakes_per_ip),
            send_queue_max=_env_int("PARLEY_SEND_QUEUE_MAX", d.send_queue_max),
            send_queue_max_bytes=_env_int("PARLEY_SEND_QUEUE_MAX_BYTES", d.send_queue_max_bytes),
            max_sessions_per_user=_env_int("PARLEY_MAX_SESSIONS_PER_USER", d.max_sessions_per_user),
            send_burst=_env_int("PARLEY_SEND_BURST", d.send_burst),
            send_window_s=_env_int("PARLEY_SEND_WINDOW_S", d.send_window_s),
            edit_burst=_env_int("PARLEY_EDIT_BURST", d.edit_burst),
            edit_window_s=_env_int("PARLEY_EDIT_WINDOW_S", d.edit_window_s),
            delete_burst=_env_int("PARLEY_DELETE_BURST", d.delete_burst),
            delete_window_s=_env_int("PARLEY_DELETE_WINDOW_S", d.delete_window_s),
            react_burst=_env_int("PARLEY_REACT_BURST", d.react_burst),
            react_window_s=_env_int("PARLEY_REACT_WINDOW_S", d.react_window_s),
            read_burst=_env_int("PARLEY_READ_BURST", d.read_burst),
            read_window_s=_env_int("PARLEY_READ_WINDOW_S", d.read_window_s),
            create_burst=_env_int("PARLEY_CREATE_BURST", d.create_burst),
            create_window_s=_env_int("PARLEY_CREATE_WINDOW_S", d.create_window_s),
            invite_burst=_env_int("PARLEY_INVITE_BURST", d.invite_burst),
            invite_window_s=_env_int("PARLEY_INVITE_WINDOW_S", d.invite_window_s),
            membership_burst=_env_int("PARLEY_MEMBERSHIP_BURST", d.membership_burst),
            membership_window_s=_env_int("PARLEY_MEMBERSHIP_WINDOW_S", d.membership_window_s),
            settings_burst=_env_int("PARLEY_SETTINGS_BURST", d.settings_burst),
            settings_window_s=_env_int("PARLEY_SETTINGS_WINDOW_S", d.settings_window_s),
            moderation_burst=_env_int("PARLEY_MODERATION_BURST", d.moderation_burst),
            moderation_window_s=_env_int("PARLEY_MODERATION_WINDOW_S", d.moderation_window_s),
            block_burst=_env_int("PARLEY_BLOCK_BURST", d.block_burst),
            block_window_s=_env_int("PARLEY_BLOCK_WINDOW_S", d.block_window_s),
            call_burst=_env_int("PARLEY_CALL_BURST", d.call_burst),
            call_window_s=_env_int("PARLEY_CALL_WINDOW_S", d.call_window_s),
            fetch_burst=_env_int("PARLEY_FETCH_BURST", d.fetch_burst),
            fetch_window_s=_env_int("PARLEY_FETCH_WINDOW_S", d.fetch_window_s),
            room_password_burst=_env_int("PARLEY_ROOM_PASSWORD_BURST", d.room_password_burst),
            room_password_window_s=_env_int("PARLEY_ROOM_PASSWORD_WINDOW_S", d.room_password_window_s),
            room_password_room_burst=_env_int("PARLEY_ROOM_PASSWORD_ROOM_BURST", d.room_password_room_burst),
            room_password_room_window_s=_env_int("PARLEY_ROOM_PASSWORD_ROOM_WINDOW_S", d.room_password_room_window_s),
            typing_interval_s=_env_float("PARLEY_TYPING_INTERVAL_S", d.typing_interval_s),
            max_reactions_per_message=_env_int("PARLEY_MAX_REACTIONS_PER_MESSAGE", d.max_reactions_per_message),
            max_reactions_per_user=_env_int("PARLEY_MAX_REACTIONS_PER_USER", d.max_reactions_per_user),
            max_edits_per_message=_env_int("PARLEY_MAX_EDITS_PER_MESSAGE", d.max_edits_per_message),
            password_threads=_env_int("PARLEY_PASSWORD_THREADS", d.password_threads),
            password_queue_max=_env_int("PARLEY_PASSWORD_QUEUE_MAX", d.password_queue_max),
            max_upload_bytes=_env_int("PARLEY_MAX_UPLOAD_BYTES", d.max_upload_bytes),
            upload_mime=_env_list("PARLEY_UPLOAD_MIME", UPLOAD_MIME_DEFAULT),
            download_url_ttl_s=_env_int("PARLEY_DOWNLOAD_URL_TTL_S", d.download_url_ttl_s),
            guest_send_burst=_env_int("PARLEY_GUEST_SEND_BURST", d.guest_send_burst),
            guest_send_window_s=_env_int("PARLEY_GUEST_SEND_WINDOW_S", d.guest_send_window_s),
            ip_auth_burst=_env_int("PARLEY_IP_AUTH_BURST", d.ip_auth_burst),
            ip_auth_window_s=_env_int("PARLEY_IP_AUTH_WINDOW_S", d.ip_auth_window_s),
            report_burst=_env_int("PARLEY_REPORT_BURST", d.report_burst),
            report_window_s=_env_int("PARLEY_REPORT_WINDOW_S", d.report_window_s),
            upload_burst=_env_int("PARLEY_UPLOAD_BURST", d.upload_burst),
            upload_window_s=_env_int("PARLEY_UPLOAD_WINDOW_S", d.upload_window_s),
            export_burst=_env_int("PARLEY_EXPORT_BURST", d.export_burst),
            export_window_s=_env_int("PARLEY_EXPORT_WINDOW_S", d.export_window_s),
            drain_timeout_s=_env_float("PARLEY_DRAIN_TIMEOUT_S", d.drain_timeout_s),
            directory_burst=_env_int("PARLEY_DIRECTORY_BURST", d.directory_burst),
            directory_window_s=_env_int("PARLEY_DIRECTORY_WINDOW_S", d.directory_window_s),
            profile_burst=_env_int("PARLEY_PROFILE_BURST", d.profile_burst),
            profile_window_s=_env_int("PARLEY_PROFILE_WINDOW_S", d.profile_window_s),
            max_avatar_bytes=_env_int("PARLEY_MAX_AVATAR_BYTES", d.max_avatar_bytes),
            receipts_max_members=_env_int("PARLEY_RECEIPTS_MAX_MEMBERS", d.receipts_max_members),
        )
        conv_subject_min_members = _env_int("PARLEY_CONV_SUBJECT_MIN_MEMBERS", cls.conv_subject_min_members)
        if conv_subject_min_members != 0 and conv_subject_min_members < 3:
            raise ValueError("PARLEY_CONV_SUBJECT_MIN_MEMBERS must be 0 (off) or at least 3")
        replication_factor = _env_int("PARLEY_KAFKA_REPLICATION_FACTOR", cls.kafka_replication_factor)
        min_insync_replicas = _env_opt_int("PARLEY_KAFKA_MIN_INSYNC_REPLICAS")
        _check_kafka_durability(replication_factor, min_insync_replicas)
        filter_action = os.environ.get("PARLEY_FILTER_ACTION", cls.filter_action)
        if filter_action not in ("reject", "flag"):
            raise ValueError(f"PARLEY_FILTER_ACTION must be reject or flag, not {filter_action!r}")
        livekit = {"livekit_url": os.environ.get("PARLEY_LIVEKIT_URL") or None,
                   "livekit_api_key": os.environ.get("PARLEY_LIVEKIT_API_KEY") or None,
                   "livekit_api_secret": os.environ.get("PARLEY_LIVEKIT_API_SECRET") or None}
        if any(livekit.values()) and not all(livekit.values()):
            raise ValueError("set all of PARLEY_LIVEKIT_URL, PARLEY_LIVEKIT_API_KEY and PARLEY_LIVEKIT_API_SECRET, "
                             "or none (calls off)")
        token_ttl_s = _env_int("PARLEY_TOKEN_TTL_S", cls.token_ttl_s)
        turn_urls, turn_secret = _env_strings("PARLEY_TURN_URLS"), os.environ.get("PARLEY_TURN_SECRET") or None
        if turn_urls and not turn_secret:
            raise ValueError("PARLEY_TURN_URLS needs PARLEY_TURN_SECRET (coturn's static-auth-secret)")
        calls: dict[str, int] = {
            "turn_ttl_s": _env_int("PARLEY_TURN_TTL_S", cls.turn_ttl_s),
            "call_ring_timeout_s": _env_int("PARLEY_CALL_RING_TIMEOUT_S", cls.call_ring_timeout_s),
            "call_token_ttl_s": _env_int("PARLEY_CALL_TOKEN_TTL_S", cls.call_token_ttl_s),
            "call_max_participants": _env_int("PARLEY_CALL_MAX_PARTICIPANTS", cls.call_max_participants),
            "call_max_video_subscriptions": _env_int("PARLEY_CALL_MAX_VIDEO_SUBSCRIPTIONS",
                                                     cls.call_max_video_subscriptions),
            "call_sweep_interval_s": _env_int("PARLEY_CALL_SWEEP_INTERVAL_S", cls.call_sweep_interval_s),
            "call_sweep_grace_s": _env_int("PARLEY_CALL_SWEEP_GRACE_S", cls.call_sweep_grace_s),
        }
        for name, least in (("turn_ttl_s", 60), ("call_ring_timeout_s", 1), ("call_token_ttl_s", 60),
                            ("call_max_participants", 2), ("call_max_video_subscriptions", 0),
                            ("call_sweep_interval_s", 1), ("call_sweep_grace_s", 1)):
            if calls[name] < least:
                raise ValueError(f"PARLEY_{name.upper()} must be at least {least}, not {calls[name]}")
        apns = {name: os.environ.get(name) or None
                for name in ("PARLEY_APNS_KEY", "PARLEY_APNS_KEY_ID", "PARLEY_APNS_TEAM_ID", "PARLEY_APNS_TOPIC")}
        if any(apns.values()) and not all(apns.values()):
            missing = ", ".join(name for name, value in apns.items() if not value)
            raise ValueError(f"APNs needs PARLEY_APNS_KEY, _KEY_ID, _TEAM_ID and _TOPIC together; missing: {missing}")
        fcm_credentials = os.environ.get("PARLEY_FCM_CREDENTIALS")
        push_send_timeout_s = _env_float("PARLEY_PUSH_SEND_TIMEOUT_S", cls.push_send_timeout_s)
        push_retry_attempts = _env_int("PARLEY_PUSH_RETRY_ATTEMPTS", cls.push_retry_attempts)
        push_looking_window_s = _env_float("PARLEY_PUSH_LOOKING_WINDOW_S", cls.push_looking_window_s)
        push_device_per_minute = _env_int("PARLEY_PUSH_DEVICE_PER_MINUTE", cls.push_device_per_minute)
        push_dedup_ttl_s = _env_int("PARLEY_PUSH_DEDUP_TTL_S", cls.push_dedup_ttl_s)
        if push_looking_window_s < 0 or push_device_per_minute < 1 or push_dedup_ttl_s < 1:
            raise ValueError("PARLEY_PUSH_LOOKING_WINDOW_S must be 0 or more, PARLEY_PUSH_DEVICE_PER_MINUTE and "
                             "PARLEY_PUSH_DEDUP_TTL_S at least 1")
        if push_send_timeout_s <= 0 or push_retry_attempts < 1:
            raise ValueError("PARLEY_PUSH_SEND_TIMEOUT_S must be above 0 and PARLEY_PUSH_RETRY_ATTEMPTS at least 1")
        base: dict[str, object] = {
            **livekit, **calls,
            "stun_urls": _env_strings("PARLEY_STUN_URLS"),
            "turn_urls": turn_urls,
            "turn_secret": turn_secret,
            "jwt_secret": secret.encode() if secret else None,
            "token_ttl_s": token_ttl_s,
            "sessions": SessionLifetimes.from_env(token_ttl_s),
            "sqlite_synchronous": os.environ.get("PARLEY_SQLITE_SYNCHRONOUS", cls.sqlite_synchronous).upper(),
            "limits": limits,
            "conv_subject_min_members": conv_subject_min_members,
            "kafka_bootstrap": os.environ.get("PARLEY_KAFKA_BOOTSTRAP", cls.kafka_bootstrap),
            "kafka_partitions": _env_int("PARLEY_KAFKA_PARTITIONS", cls.kafka_partitions),
            "kafka_replication_factor": replication_factor,
            "kafka_min_insync_replicas": min_insync_replicas,
            "kafka_idempotence": _env_bool("PARLEY_KAFKA_IDEMPOTENCE", cls.kafka_idempotence),
            "kafka_fetch_max_wait_ms": _env_int("PARLEY_KAFKA_FETCH_MAX_WAIT_MS", cls.kafka_fetch_max_wait_ms),
            "kafka_commit_interval_ms": _env_int("PARLEY_KAFKA_COMMIT_INTERVAL_MS", cls.kafka_commit_interval_ms),
            "nats_url": os.environ.get("PARLEY_NATS_URL", cls.nats_url),
            "redis_url": os.environ.get("PARLEY_REDIS_URL", cls.redis_url),
            "gateway_id": os.environ.get("PARLEY_GATEWAY_ID") or None,
            "reuse_port": _env_bool("PARLEY_REUSE_PORT", cls.reuse_port),
            "metrics_port": _env_int("PARLEY_METRICS_PORT", 0) or None,
            "shutdown_timeout_s": _env_float("PARLEY_SHUTDOWN_TIMEOUT_S", cls.shutdown_timeout_s),
            "s3": S3Settings.from_env(),
            "store": os.environ.get("PARLEY_STORE", cls.store).lower(),
            "cassandra_keyspace": os.environ.get("PARLEY_CASSANDRA_KEYSPACE", cls.cassandra_keyspace),
            "cassandra_dc": os.environ.get("PARLEY_CASSANDRA_DC", cls.cassandra_dc),
            "cassandra_rf": _env_int("PARLEY_CASSANDRA_RF", cls.cassandra_rf),
            "cassandra_username": os.environ.get("PARLEY_CASSANDRA_USERNAME") or None,
            "cassandra_password": os.environ.get("PARLEY_CASSANDRA_PASSWORD") or None,
            "cassandra_idempotency_ttl_s": _env_int("PARLEY_CASSANDRA_IDEMPOTENCY_TTL_S",
                                                    cls.cassandra_idempotency_ttl_s),
            "cassandra_outbox_ttl_s": _env_int("PARLEY_CASSANDRA_OUTBOX_TTL_S", cls.cassandra_outbox_ttl_s),
            "policy_json": os.environ.get("PARLEY_POLICY") or None,
            "policy_refresh_s": _env_float("PARLEY_POLICY_REFRESH_S", cls.policy_refresh_s),
            "relay_checkpoint_s": _env_float("PARLEY_RELAY_CHECKPOINT_S", cls.relay_checkpoint_s),
            "content_filter": os.environ.get("PARLEY_CONTENT_FILTER") or None,
            "filter_words": tuple(w.strip() for w in os.environ.get("PARLEY_FILTER_WORDS", "").split(",") if w.strip()),
            "filter_action": filter_action,
            "fcm_credentials": Path(fcm_credentials) if fcm_credentials else None,
            "apns_key": Path(apns["PARLEY_APNS_KEY"]) if apns["PARLEY_APNS_KEY"] else None,
            "apns_key_id": apns["PARLEY_APNS_KEY_ID"],
            "apns_team_id": apns["PARLEY_APNS_TEAM_ID"],
            "apns_topic": apns["PARLEY_APNS_TOPIC"],
            "apns_sandbox": _env_bool("PARLEY_APNS_SANDBOX", cls.apns_sandbox),
            "fcm_endpoint": os.environ.get("PARLEY_FCM_ENDPOINT") or None,
            "apns_endpoint": os.environ.get("PARLEY_APNS_ENDPOINT") or None,
            "push_send_timeout_s": push_send_timeout_s,
            "push_retry_attempts": push_retry_attempts,
            "allow_loadtest_users": _env_bool("PARLEY_ALLOW_LOADTEST_USERS", cls.allow_loadtest_users),
            "push_looking_window_s": push_looking_window_s,
            "push_device_per_minute": push_device_per_minute,
            "push_dedup_ttl_s": push_dedup_ttl_s,
            "trace_clients": _env_bool("PARLEY_TRACE_CLIENTS", cls.trace_clients),
        }
        hosts, port = parse_hosts(os.environ.get("PARLEY_CASSANDRA_HOSTS", ""))
        base.update(cassandra_hosts=hosts, cassandra_port=port)
        if base["store"] not in ("sqlite", "cassandra"):
            raise ValueError(f"PARLEY_STORE must be sqlite or cassandra, not {base['store']!r}")
        base.update({k: v for k, v in overrides.items() if v is not None})
        if "data_dir" in base:
            base["data_dir"] = Path(str(base["data_dir"]))
        return cls(**base)  # type: ignore[arg-type]
