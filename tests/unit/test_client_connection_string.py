"""Connection strings: `esdb://host:port[,host2:port]?store=...&tls=...&timeout=...`, plain
NATS URLs, and errors that name the bad part."""

from __future__ import annotations

import pytest

from esdb.client import (
    Client,
    InvalidConnectionString,
    InvalidRequestError,
    RetryPolicy,
    parse_connection_string,
)


def test_an_esdb_string_names_servers_and_options() -> None:
    settings = parse_connection_string(
        "esdb://node1:4222,node2:4223,[::1]?store=orders&timeout=2.5&max_retries=3"
        "&retry_deadline=20"
    )
    assert settings.servers == ("nats://node1:4222", "nats://node2:4223", "nats://[::1]:4222")
    assert settings.store == "orders"
    assert settings.timeout == 2.5
    assert (settings.max_retries, settings.retry_deadline) == (3, 20.0)
    assert not settings.tls


def test_tls_and_credentials_go_to_every_server_and_the_password_is_not_shown() -> None:
    settings = parse_connection_string("ESDB://app:s3cret@a,b:5000?tls=true&tls_ca_file=/ca.pem")
    assert settings.servers == ("tls://app:s3cret@a:4222", "tls://app:s3cret@b:5000")
    assert settings.tls_ca_file == "/ca.pem"
    assert "s3cret" not in settings.display
    assert settings.display.startswith("ESDB://app:***@a,b:5000")


def test_nats_urls_pass_through() -> None:
    settings = parse_connection_string("nats://127.0.0.1:4222, tls://token@other:4223")
    assert settings.servers == ("nats://127.0.0.1:4222", "tls://token@other:4223")
    assert settings.store is None and settings.timeout is None
    assert "token" not in settings.display


@pytest.mark.parametrize(
    ("url", "part", "says"),
    [
        ("esdb://host:42x", "host:42x", "not a port number"),
        ("esdb://host:0", "host:0", "not a port number"),
        ("esdb://a,,b", "", "a host is empty"),
        ("esdb://bad host", "bad host", "not a host name"),
        ("esdb://host/orders", "/orders", "give the store as ?store="),
        ("esdb://host?stor=orders", "stor", "unknown option 'stor'"),
        ("esdb://host?store=a&store=b", "store", "given twice"),
        ("esdb://host?store=", "store=", "store is empty"),
        ("esdb://host?tls=maybe", "tls=maybe", "not true or false"),
        ("esdb://host?timeout=0", "timeout=0", "positive number of seconds"),
        ("esdb://host?timeout=soon", "timeout=soon", "positive number of seconds"),
        ("esdb://host?max_retries=-1", "max_retries=-1", "whole number"),
        ("esdb://host?store", "?store", "key=value"),
        ("http://host:4222", "http://", "unknown scheme"),
        ("", "", "empty"),
    ],
)
def test_a_bad_string_is_an_error_naming_the_part(url: str, part: str, says: str) -> None:
    with pytest.raises(InvalidConnectionString) as raised:
        parse_connection_string(url)
    assert raised.value.details == {"field": "url", "part": part}
    assert says in raised.value.message
    assert isinstance(raised.value, ValueError)
    assert isinstance(raised.value, InvalidRequestError)


def test_a_password_is_not_shown_in_an_error() -> None:
    with pytest.raises(InvalidConnectionString) as raised:
        parse_connection_string("esdb://app:s3cret@host:x")
    assert "s3cret" not in str(raised.value)


def test_connect_raises_a_bad_string_at_once() -> None:
    with pytest.raises(ValueError, match="unknown option 'sotre'"):
        Client.connect("esdb://localhost?sotre=x")


def options(connecting: object) -> tuple[str, float, RetryPolicy]:
    return (
        connecting._store,  # type: ignore[attr-defined]
        connecting._timeout,  # type: ignore[attr-defined]
        connecting._retry,  # type: ignore[attr-defined]
    )


def test_defaults_then_the_string_then_keywords() -> None:
    store, timeout, retry = options(Client.connect("nats://h:4222"))
    assert (store, timeout, retry) == ("default", 5.0, RetryPolicy())

    url = "esdb://h?store=s&timeout=2&max_retries=1&retry_deadline=3"
    store, timeout, retry = options(Client.connect(url))
    assert (store, timeout, retry.max_retries, retry.deadline) == ("s", 2.0, 1, 3.0)

    store, timeout, retry = options(
        Client.connect(url, store="k", timeout=9.0, max_retries=7, retry_deadline=8.0)
    )
    assert (store, timeout, retry.max_retries, retry.deadline) == ("k", 9.0, 7, 8.0)


def test_a_retry_policy_replaces_the_strings_and_keywords_adjust_it() -> None:
    policy = RetryPolicy(max_retries=2, initial_backoff=0.5)
    _, _, retry = options(Client.connect("esdb://h?max_retries=9", retry=policy))
    assert retry == policy
    _, _, retry = options(Client.connect("esdb://h", retry=policy, max_retries=0))
    assert retry == RetryPolicy(max_retries=0, initial_backoff=0.5)
