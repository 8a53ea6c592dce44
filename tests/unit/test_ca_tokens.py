"""Join tokens: format, parsing and its errors, constant-time comparison, rotation, roles."""

from __future__ import annotations

import hashlib
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from manager.ca import (
    MANAGER_ROLE,
    WORKER_ROLE,
    InvalidJoinToken,
    JoinToken,
    JoinTokens,
    generate_join_token,
    join_token_matches,
    parse_join_token,
    split_host_port,
)
from manager.ca.errors import CAError
from manager.ca.tokens import base36

DIGEST = hashlib.sha256(b"root ca").hexdigest()
OTHER_DIGEST = hashlib.sha256(b"another root ca").hexdigest()
TOKEN_RE = re.compile(r"^SHTKN-1-[0-9a-z]{50}-[0-9a-z]{25}$")


def test_token_has_swarms_shape() -> None:
    token = generate_join_token(DIGEST)
    assert TOKEN_RE.match(token), token
    digest_part = token.split("-")[2]
    assert int(digest_part, 36) == int(DIGEST, 16)


def test_small_digests_are_zero_padded() -> None:
    token = generate_join_token("00" * 31 + "01")
    assert token.split("-")[2] == "0" * 49 + "1"
    assert parse_join_token(token).ca_digest_hex == "00" * 31 + "01"


def test_tokens_differ_only_in_their_secret() -> None:
    first, second = generate_join_token(DIGEST), generate_join_token(DIGEST)
    assert first != second
    assert first.split("-")[:3] == second.split("-")[:3]


def test_parse_round_trips() -> None:
    token = generate_join_token(DIGEST)
    parsed = parse_join_token(token)
    assert parsed == JoinToken(version=1, ca_digest_hex=DIGEST, secret=token.split("-")[3])
    assert parse_join_token(f"  {token}\n") == parsed


@given(st.binary(min_size=32, max_size=32))
def test_any_digest_survives_a_round_trip(digest: bytes) -> None:
    assert parse_join_token(generate_join_token(digest.hex())).ca_digest_hex == digest.hex()


@given(st.integers(min_value=0, max_value=(1 << 256) - 1))
def test_base36_round_trips(value: int) -> None:
    text = base36(value, 50)
    assert len(text) == 50 and int(text, 36) == value


GOOD = generate_join_token(DIGEST)
GOOD_DIGEST_PART, GOOD_SECRET = GOOD.split("-")[2], GOOD.split("-")[3]


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("", "invalid join token: expected SHTKN-1-<ca digest>-<secret>"),
        ("hello", "invalid join token: expected SHTKN-1-<ca digest>-<secret>"),
        (f"XXTKN-1-{GOOD_DIGEST_PART}-{GOOD_SECRET}", "expected SHTKN-1-<ca digest>-<secret>"),
        (f"SHTKN-1-{GOOD_DIGEST_PART}", "expected SHTKN-1-<ca digest>-<secret>"),
        (f"SWMTKN-1-{GOOD_DIGEST_PART}-{GOOD_SECRET}", "this is a Docker Swarm token"),
        (f"SHTKN-2-{GOOD_DIGEST_PART}-{GOOD_SECRET}", "version '2' is not supported"),
        (f"SHTKN-1-{GOOD_DIGEST_PART[:-1]}-{GOOD_SECRET}", r"CA digest must be 50 base-36 characters \(got 49\)"),
        (f"SHTKN-1-{GOOD_DIGEST_PART.upper()}-{GOOD_SECRET}", "CA digest must be 50 base-36"),
        (f"SHTKN-1-{GOOD_DIGEST_PART}-{GOOD_SECRET}0", r"secret must be 25 base-36 characters \(got 26\)"),
        (f"SHTKN-1-{GOOD_DIGEST_PART}-{GOOD_SECRET[:-1]}!", "secret must be 25 base-36"),
        (f"SHTKN-1-{'z' * 50}-{GOOD_SECRET}", "CA digest is larger than a sha256"),
    ],
)
def test_malformed_tokens_say_what_is_wrong(token: str, message: str) -> None:
    with pytest.raises(InvalidJoinToken, match=message) as caught:
        parse_join_token(token)
    assert GOOD_SECRET not in str(caught.value)


def test_parse_with_a_digest_catches_another_clusters_token() -> None:
    token = generate_join_token(OTHER_DIGEST)
    with pytest.raises(InvalidJoinToken, match="join token was made for a different cluster CA"):
        parse_join_token(token, ca_digest_hex=DIGEST)
    assert parse_join_token(token, ca_digest_hex=OTHER_DIGEST.upper()).ca_digest_hex == OTHER_DIGEST


@pytest.mark.parametrize("digest", ["xyz", "ab" * 16])
def test_generate_refuses_a_bad_digest(digest: str) -> None:
    with pytest.raises(InvalidJoinToken, match="cannot make a join token"):
        generate_join_token(digest)


def test_matches_compares_whole_tokens() -> None:
    token = generate_join_token(DIGEST)
    assert join_token_matches(token, token)
    assert join_token_matches(token + "\n", token)
    assert not join_token_matches(generate_join_token(DIGEST), token)
    assert not join_token_matches("", token)


def test_rotate_changes_only_the_named_tokens_secret() -> None:
    tokens = JoinTokens.create(DIGEST)
    rotated = tokens.rotate("worker")
    assert rotated.manager == tokens.manager
    assert rotated.worker != tokens.worker
    assert parse_join_token(rotated.worker).ca_digest_hex == DIGEST
    again = rotated.rotate(MANAGER_ROLE)
    assert again.worker == rotated.worker and again.manager != rotated.manager
    assert tokens.worker != tokens.manager


def test_rotate_refuses_an_unknown_role() -> None:
    with pytest.raises(InvalidJoinToken, match="no join token for role 'admin'"):
        JoinTokens.create(DIGEST).rotate("admin")


def test_role_for_admits_each_token_to_its_role() -> None:
    tokens = JoinTokens.create(DIGEST)
    assert tokens.role_for(tokens.worker, DIGEST) == WORKER_ROLE
    assert tokens.role_for(tokens.manager, DIGEST) == MANAGER_ROLE
    assert tokens.token_for("manager") == tokens.manager
    assert tokens.token_for(WORKER_ROLE) == tokens.worker


def test_role_for_refuses_a_rotated_token() -> None:
    tokens = JoinTokens.create(DIGEST)
    old_worker = tokens.worker
    rotated = tokens.rotate("worker")
    with pytest.raises(InvalidJoinToken, match="matches neither the worker nor the manager token"):
        rotated.role_for(old_worker, DIGEST)


def test_role_for_refuses_another_clusters_token_and_garbage() -> None:
    tokens = JoinTokens.create(DIGEST)
    with pytest.raises(InvalidJoinToken, match="different cluster CA"):
        tokens.role_for(generate_join_token(OTHER_DIGEST), DIGEST)
    with pytest.raises(InvalidJoinToken, match="expected SHTKN-1-<ca digest>-<secret>"):
        tokens.role_for("SHTKN-1", DIGEST)


@pytest.mark.parametrize(
    ("addr", "expected"),
    [
        ("192.0.2.10:2377", ("192.0.2.10", 2377)),
        ("manager1:2377", ("manager1", 2377)),
        ("[2001:db8::1]:2377", ("2001:db8::1", 2377)),
    ],
)
def test_split_host_port(addr: str, expected: tuple[str, int]) -> None:
    assert split_host_port(addr) == expected


@pytest.mark.parametrize("addr", ["192.0.2.10", ":2377", "192.0.2.10:", "192.0.2.10:x", "2001:db8::1:2377", "h:70000"])
def test_split_host_port_names_a_malformed_address(addr: str) -> None:
    with pytest.raises(CAError, match=f"invalid manager address {re.escape(repr(addr))}"):
        split_host_port(addr)
