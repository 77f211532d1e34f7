"""Keys never survive scrubbing, whether registered or merely key-shaped."""

from __future__ import annotations

from troupe_agent.scrub import REDACTED, one_line, register_secret, scrub


def test_registered_secret_is_removed_everywhere() -> None:
    key = "distinctive-secret-value-8d1f"
    register_secret(key)
    text = scrub(f"provider said: invalid key {key}; header was {key}")
    assert key not in text
    assert text.count(REDACTED) == 2


def test_key_shaped_tokens_are_removed_even_when_unregistered() -> None:
    text = scrub(
        "Incorrect API key provided: sk-proj-abc123XYZ789. Authorization: Bearer abcdefghijklmnop"
        " token eyJhbGciOiJSUzI1NiIsImtpZCI6Ik.eyJhdWQiOlsidHJvdXBlLmRldi9hZ2VudCJd.c2lnbmF0dXJl"
    )
    assert "sk-proj" not in text
    assert "abcdefghijklmnop" not in text
    assert "eyJ" not in text and "c2lnbmF0dXJl" not in text


def test_short_or_empty_secrets_are_not_registered() -> None:
    register_secret("")
    register_secret(None)
    register_secret("ab")
    assert scrub("a b ab") == "a b ab"


def test_one_line_flattens_and_cuts() -> None:
    assert one_line("first\n  second\tthird") == "first second third"
    long_line = one_line("x" * 500, limit=50)
    assert len(long_line) == 50
    assert long_line.endswith("…")
