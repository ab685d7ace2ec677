"""How every process reaches Redis and the broker: the one place that reads the URL settings.

``AGENTCHORD_REDIS_URL`` may be

- ``redis://[user:password@]host:port/db`` or ``unix://...``: one server;
- ``rediss://...``: the same over TLS, verified against ``AGENTCHORD_REDIS_CA_FILE``;
- ``sentinel://[user:password@]host:port;sentinel://host:port;.../db``: Redis Sentinel (kombu's
  form), with the master's name in ``AGENTCHORD_REDIS_SENTINEL_MASTER``; the password in the URL
  is the master's, the Sentinels' own is ``AGENTCHORD_REDIS_SENTINEL_PASSWORD``.

The Celery broker, the Celery result backend and the registry all use it (the registry through
:func:`redis_client`), unless ``AGENTCHORD_BROKER_URL`` names another broker (RabbitMQ:
``amqp://...``). A URL that cannot work fails when the process starts, naming the setting.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import redis
from redis.sentinel import Sentinel

from proj.errors import ConfigurationError
from proj.settings import Settings

REDIS_SCHEMES = ("redis", "rediss", "unix", "sentinel")

# Every Redis command agentchord's processes send: the registry's scripts and reads, Celery's Redis
# broker and result backend (kombu), the API. An ACL user limited to these (``acl_rule``) runs
# everything; tests/test_redis_tls.py proves it on a TLS server whose only user is such a user.
REDIS_COMMANDS = (
    # server and connection
    "ping", "time", "info", "client|setname", "config|get",
    # scripts (the registry's transitions; EVALSHA, loaded again after a restart or failover)
    "evalsha", "script|load",
    # keys, strings, counters
    "get", "set", "setex", "mget", "del", "exists", "expire", "pexpire", "ttl", "pttl", "incr",
    # hashes
    "hget", "hset", "hsetnx", "hdel", "hgetall", "hmget", "hkeys", "hvals", "hlen", "hincrby", "hincrbyfloat",
    # lists (broker queues, admission queues)
    "lpush", "rpush", "lpop", "brpop", "llen", "lrange", "lindex", "lrem",
    # sets and sorted sets
    "sadd", "srem", "smembers", "scard",
    "zadd", "zrem", "zcard", "zrange", "zrangebyscore", "zrevrange", "zrevrangebyscore", "zremrangebyscore",
    # streams (event logs, progress)
    "xadd", "xrange", "xrevrange", "xread", "xlen",
    # pub/sub (run ends, Celery events and results)
    "publish", "subscribe", "unsubscribe", "psubscribe", "punsubscribe",
    # transactions (kombu's pipelines)
    "multi", "exec", "discard", "watch", "unwatch",
)  # fmt: skip


def acl_rule(password: str) -> str:
    """The ``ACL SETUSER <name>`` rule of a user that may run agentchord and nothing more: every key
    and channel (queues and runs are named at run time), only :data:`REDIS_COMMANDS`."""
    return " ".join(["on", f">{password}", "~*", "&*", "-@all", *(f"+{command}" for command in REDIS_COMMANDS)])


BROKER_SCHEMES = (*REDIS_SCHEMES, "amqp", "amqps")


@dataclass(frozen=True)
class SentinelTarget:
    """A ``sentinel://`` URL, parsed: the Sentinels, the database and the master's credentials."""

    hosts: tuple[tuple[str, int], ...]
    db: int
    username: str | None
    password: str | None


def parse_sentinel_url(url: str) -> SentinelTarget:
    """``sentinel://[user:pw@]h1:p1;sentinel://h2:p2;.../db`` -> its parts (ConfigurationError if malformed)."""
    hosts: list[tuple[str, int]] = []
    username = password = None
    db = 0
    for part in url.split(";"):
        parsed = urlsplit(part.strip())
        if parsed.scheme != "sentinel" or not parsed.hostname:
            raise ConfigurationError(f"AGENTCHORD_REDIS_URL: {_redacted(part)!r} is not sentinel://host:port")
        hosts.append((parsed.hostname, parsed.port or 26379))
        username = username or (unquote(parsed.username) if parsed.username else None)
        password = password or (unquote(parsed.password) if parsed.password else None)
        if parsed.path.strip("/"):
            try:
                db = int(parsed.path.strip("/"))
            except ValueError:
                raise ConfigurationError(f"AGENTCHORD_REDIS_URL: database {parsed.path!r} is not a number") from None
    return SentinelTarget(tuple(hosts), db, username, password)


def sentinel_url_for_celery(url: str) -> str:
    """The Sentinel URL with the credentials and database written into every part: kombu treats
    each part as a fallback URL of its own and Celery's result backend reads the first part's, so
    a password or database given once (the documented form) would be lost on the other parts."""
    target = parse_sentinel_url(url)
    credentials = ""
    if target.password is not None:
        credentials = f"{quote(target.username or '', safe='')}:{quote(target.password, safe='')}@"
    return ";".join(f"sentinel://{credentials}{host}:{port}/{target.db}" for host, port in target.hosts)


def check_connection_settings(settings: Settings) -> None:
    """Refuse, naming the setting, a Redis or broker URL that cannot work."""
    url = settings.redis_url
    if url:
        scheme = urlsplit(url).scheme
        if scheme not in REDIS_SCHEMES:
            raise ConfigurationError(
                f"AGENTCHORD_REDIS_URL: scheme {scheme!r} is not one of {', '.join(REDIS_SCHEMES)} "
                "(redis://host:6379/0, rediss:// for TLS, sentinel://host:26379;sentinel://...)"
            )
        if scheme == "sentinel":
            parse_sentinel_url(url)
            if not settings.redis_sentinel_master:
                raise ConfigurationError(
                    "AGENTCHORD_REDIS_URL is a sentinel:// URL: set AGENTCHORD_REDIS_SENTINEL_MASTER to the "
                    "name of the master the Sentinels monitor"
                )
        if scheme == "rediss" and not settings.redis_ca_file:
            raise ConfigurationError(
                "AGENTCHORD_REDIS_URL is a rediss:// (TLS) URL: set AGENTCHORD_REDIS_CA_FILE to the CA "
                "certificate that signed the server's certificate"
            )
    if settings.redis_ca_file and not _readable(settings.redis_ca_file):
        raise ConfigurationError(f"AGENTCHORD_REDIS_CA_FILE: cannot read {settings.redis_ca_file}")
    if settings.broker_url:
        scheme = urlsplit(settings.broker_url).scheme
        if scheme not in BROKER_SCHEMES:
            raise ConfigurationError(
                f"AGENTCHORD_BROKER_URL: scheme {scheme!r} is not one of {', '.join(BROKER_SCHEMES)} "
                "(amqp://user:password@host:5672/vhost for RabbitMQ)"
            )


def redis_client(settings: Settings, **options: Any) -> redis.Redis:
    """A client on the registry's Redis: the Sentinels' current master, or the URL's server."""
    check_connection_settings(settings)
    url = settings.resolved_redis_url
    options = {"decode_responses": True, "health_check_interval": 30, **options}
    if urlsplit(url).scheme == "sentinel":
        target = parse_sentinel_url(url)
        sentinel_password = settings.redis_sentinel_password
        sentinels = Sentinel(  # type: ignore[no-untyped-call]
            list(target.hosts),
            sentinel_kwargs={"password": sentinel_password.get_secret_value()} if sentinel_password else None,
            socket_timeout=5,
        )
        assert settings.redis_sentinel_master is not None  # checked above
        master: redis.Redis = sentinels.master_for(  # type: ignore[no-untyped-call]
            settings.redis_sentinel_master,
            db=target.db,
            username=target.username,
            password=target.password,
            socket_timeout=10,
            **options,
        )
        return master
    if settings.redis_ca_file:
        options.update(ssl_ca_certs=settings.redis_ca_file, ssl_cert_reqs="required")
    return redis.Redis.from_url(url, **options)


def celery_connection_config(settings: Settings) -> dict[str, Any]:
    """Celery's broker and result-backend settings for ``settings`` (merged into its config).
    A URL that cannot work raises here: ``celery -A proj ...`` stops at start, naming the setting."""
    check_connection_settings(settings)
    url = settings.redis_url or "redis://127.0.0.1:6379/0"
    broker = settings.broker_url or url
    redis_transport: dict[str, Any] = {}
    if urlsplit(url).scheme == "sentinel":
        url = sentinel_url_for_celery(url)
        broker = settings.broker_url or url
        redis_transport["master_name"] = settings.redis_sentinel_master
        if settings.redis_sentinel_password:
            redis_transport["sentinel_kwargs"] = {"password": settings.redis_sentinel_password.get_secret_value()}
    config: dict[str, Any] = {"broker_url": broker, "result_backend": url}
    if redis_transport:
        config["result_backend_transport_options"] = dict(redis_transport)
    if settings.redis_ca_file:
        tls = {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": settings.redis_ca_file}
        config["redis_backend_use_ssl"] = tls
        if not settings.broker_url:
            config["broker_use_ssl"] = tls
    config["broker_transport_options"] = redis_transport if not settings.broker_url else {}
    if not broker_is_redis(settings):
        # RabbitMQ: one durable quorum queue per role (replicated, real acknowledgements instead of
        # the Redis transport's visibility timeout), declared as workers and senders first use it.
        config["task_default_queue_type"] = "quorum"
        config["task_create_missing_queue_type"] = "quorum"
        config["worker_detect_quorum_queues"] = True
    return config


def broker_is_redis(settings: Settings) -> bool:
    """Whether task messages travel in Redis lists (the default) rather than another broker."""
    return not settings.broker_url or urlsplit(settings.broker_url).scheme in REDIS_SCHEMES


def amqp_queue_depths(url: str, queues: list[str]) -> dict[str, int]:
    """Messages ready in each RabbitMQ queue (a passive declare: nothing is created; a queue
    nobody declared yet holds nothing)."""
    from amqp.exceptions import NotFound  # type: ignore[import-untyped]
    from kombu import Connection

    depths: dict[str, int] = {}
    with Connection(url, connect_timeout=5) as connection:
        channel = connection.channel()
        for queue in queues:
            try:
                depths[queue] = int(channel.queue_declare(queue=queue, passive=True).message_count)
            except NotFound:
                depths[queue] = 0
                channel = connection.channel()  # the broker closed the channel with the error
    return depths


def _readable(path: str) -> bool:
    try:
        with open(path, "rb"):
            return True
    except OSError:
        return False


def _redacted(url: str) -> str:
    parsed = urlsplit(url)
    if parsed.password:
        return url.replace(f":{parsed.password}@", ":***@")
    return url
