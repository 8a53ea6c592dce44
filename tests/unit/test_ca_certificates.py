"""Root CA creation and loading, CSR signing, node identity, and node certificate verification."""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from manager.ca import (
    MANAGER_ROLE,
    WORKER_ROLE,
    CAError,
    CertificateError,
    NodeIdentity,
    RootCA,
    make_node_key_and_csr,
    verify_node_cert,
)

NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.timezone.utc)


@pytest.fixture(scope="module")
def ca() -> RootCA:
    return RootCA.create("cluster-a", NOW)


def issue(ca: RootCA, node_id: str = "node1", role: str = WORKER_ROLE, **kwargs) -> bytes:
    _, csr_pem = make_node_key_and_csr()
    return ca.sign_node_csr(csr_pem, node_id, role, kwargs.pop("now", NOW), **kwargs)


def load(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def test_create_makes_a_self_signed_p256_ca_for_the_cluster(ca: RootCA) -> None:
    cert = load(ca.cert_pem)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "shoal-root-ca"
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "cluster-a"
    assert cert.issuer == cert.subject
    cert.verify_directly_issued_by(cert)
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca and constraints.path_length == 0
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.public_key().curve.name == "secp256r1"
    assert cert.not_valid_after_utc - NOW == dt.timedelta(days=20 * 365)
    assert cert.not_valid_before_utc < NOW
    assert ca.cluster_id == "cluster-a"
    assert ca.can_sign


def test_digest_is_sha256_of_the_der_certificate(ca: RootCA) -> None:
    der = load(ca.cert_pem).public_bytes(serialization.Encoding.DER)
    assert ca.digest == hashlib.sha256(der).hexdigest()


def test_load_round_trips_and_keeps_the_digest(ca: RootCA) -> None:
    loaded = RootCA.load(ca.cert_pem, ca.key_pem)
    assert loaded.digest == ca.digest and loaded.can_sign
    leaf = issue(loaded, "n2")
    verify_node_cert(leaf, ca.cert_pem, NOW)


def test_load_without_key_verifies_but_cannot_sign(ca: RootCA) -> None:
    public_only = RootCA.load(ca.cert_pem, None)
    assert public_only.key_pem is None and not public_only.can_sign
    with pytest.raises(CAError, match="has no CA key"):
        issue(public_only)


def test_load_refuses_a_key_that_does_not_match(ca: RootCA) -> None:
    other = RootCA.create("cluster-a", NOW)
    with pytest.raises(CAError, match="does not match the certificate"):
        RootCA.load(ca.cert_pem, other.key_pem)


def test_load_refuses_a_leaf_as_ca(ca: RootCA) -> None:
    with pytest.raises(CAError, match="not a CA certificate"):
        RootCA.load(issue(ca), None)


def test_create_refuses_an_empty_cluster_id() -> None:
    with pytest.raises(CAError, match="cluster ID is empty"):
        RootCA.create("", NOW)


def test_signed_leaf_carries_the_node_identity(ca: RootCA) -> None:
    cert = load(issue(ca, "abc123", MANAGER_ROLE, ip_sans=["192.0.2.10", "2001:db8::1"]))
    subject = cert.subject
    assert subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "abc123"
    assert subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == "swarm-manager"
    assert subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "cluster-a"
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["abc123", "swarm-manager", "localhost"]
    assert sans.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("192.0.2.10"),
        ipaddress.ip_address("2001:db8::1"),
    ]
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usages) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    cert.verify_directly_issued_by(load(ca.cert_pem))


def test_leaf_lasts_90_days_by_default_and_is_backdated(ca: RootCA) -> None:
    cert = load(issue(ca))
    assert cert.not_valid_after_utc == NOW + dt.timedelta(days=90)
    assert cert.not_valid_before_utc == NOW - dt.timedelta(hours=1)
    short = load(issue(ca, validity=dt.timedelta(hours=2)))
    assert short.not_valid_after_utc == NOW + dt.timedelta(hours=2)


def test_leaf_never_outlives_the_root(ca: RootCA) -> None:
    cert = load(issue(ca, validity=dt.timedelta(days=30 * 365)))
    assert cert.not_valid_after_utc == load(ca.cert_pem).not_valid_after_utc


def test_the_csr_subject_is_ignored(ca: RootCA) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    evil_subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "someone-else"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, MANAGER_ROLE),
        ]
    )
    csr = x509.CertificateSigningRequestBuilder().subject_name(evil_subject).sign(key, hashes.SHA256())
    leaf = ca.sign_node_csr(csr.public_bytes(serialization.Encoding.PEM), "w1", WORKER_ROLE, NOW)
    identity = NodeIdentity.from_cert_pem(leaf)
    assert (identity.node_id, identity.role) == ("w1", WORKER_ROLE)


def test_leaf_holds_the_csr_key(ca: RootCA) -> None:
    key_pem, csr_pem = make_node_key_and_csr()
    cert = load(ca.sign_node_csr(csr_pem, "n1", WORKER_ROLE, NOW))
    key = serialization.load_pem_private_key(key_pem, None)
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()


def test_a_csr_with_a_bad_signature_is_refused(ca: RootCA) -> None:
    _, csr_pem = make_node_key_and_csr()
    der = bytearray(x509.load_pem_x509_csr(csr_pem).public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # the last byte belongs to the signature's s value
    tampered = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(CAError, match="node n1: the CSR's signature does not verify"):
        ca.sign_node_csr(tampered, "n1", WORKER_ROLE, NOW)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"role": "swarm-admin"}, "role 'swarm-admin' is not"),
        ({"node_id": ""}, "a node ID is"),
        ({"node_id": "bad id"}, "a node ID is"),
        ({"validity": dt.timedelta(minutes=30)}, "shorter than the minimum"),
        ({"ip_sans": ["not-an-ip"]}, "does not appear to be an IPv4 or IPv6 address"),
    ],
)
def test_bad_signing_requests_are_refused(ca: RootCA, kwargs: dict, message: str) -> None:
    with pytest.raises(CAError, match=message):
        issue(ca, **kwargs)


def test_garbage_csr_is_refused(ca: RootCA) -> None:
    with pytest.raises(CAError, match="node n1: the CSR is not valid PEM"):
        ca.sign_node_csr(b"hello", "n1", WORKER_ROLE, NOW)


def test_small_rsa_keys_are_refused(ca: RootCA) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(key, hashes.SHA256())
    with pytest.raises(CAError, match="1024 bits is too small"):
        ca.sign_node_csr(csr.public_bytes(serialization.Encoding.PEM), "n1", WORKER_ROLE, NOW)


def test_identity_from_pem_der_and_chain(ca: RootCA) -> None:
    leaf_pem = issue(ca, "m1", MANAGER_ROLE)
    expected = NodeIdentity("m1", MANAGER_ROLE, "cluster-a", NOW + dt.timedelta(days=90))
    assert NodeIdentity.from_cert_pem(leaf_pem) == expected
    assert NodeIdentity.from_cert_pem(leaf_pem + ca.cert_pem) == expected
    der = load(leaf_pem).public_bytes(serialization.Encoding.DER)
    assert NodeIdentity.from_der(der) == expected


def test_identity_refuses_a_ca_certificate(ca: RootCA) -> None:
    with pytest.raises(CertificateError, match="not a node certificate: it is a CA certificate"):
        NodeIdentity.from_cert_pem(ca.cert_pem)


def _leaf_signed_by(ca: RootCA, subject: x509.Name) -> bytes:
    """A leaf signed with the CA's key but with a subject of the test's choosing."""
    ca_key = serialization.load_pem_private_key(ca.key_pem, None)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(load(ca.cert_pem).subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(hours=1))
        .not_valid_after(NOW + dt.timedelta(days=1))
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def test_identity_refuses_an_unknown_role(ca: RootCA) -> None:
    pem = _leaf_signed_by(
        ca,
        x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, "n1"),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "admins"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cluster-a"),
            ]
        ),
    )
    with pytest.raises(CertificateError, match="its OU is 'admins'"):
        NodeIdentity.from_cert_pem(pem)


def test_identity_refuses_non_pem() -> None:
    with pytest.raises(CertificateError, match="not a PEM certificate"):
        NodeIdentity.from_cert_pem(b"nope")
    with pytest.raises(CertificateError, match="not valid DER"):
        NodeIdentity.from_der(b"nope")


def test_verify_accepts_a_current_node_cert(ca: RootCA) -> None:
    identity = verify_node_cert(issue(ca, "w7"), ca.cert_pem, NOW + dt.timedelta(days=1))
    assert (identity.node_id, identity.role, identity.cluster_id) == ("w7", WORKER_ROLE, "cluster-a")


def test_verify_rejects_a_cert_from_another_ca(ca: RootCA) -> None:
    impostor = RootCA.create("cluster-a", NOW)  # same cluster name, different key
    with pytest.raises(CertificateError, match="node w1 .* was not issued by this cluster's CA"):
        verify_node_cert(issue(impostor, "w1"), ca.cert_pem, NOW)


def test_verify_rejects_an_expired_cert(ca: RootCA) -> None:
    leaf = issue(ca, "w1", validity=dt.timedelta(days=1))
    with pytest.raises(CertificateError, match="node w1 .* expired at 2025-06-02T12:00:00"):
        verify_node_cert(leaf, ca.cert_pem, NOW + dt.timedelta(days=2))


def test_verify_rejects_a_cert_not_yet_valid(ca: RootCA) -> None:
    with pytest.raises(CertificateError, match="not valid before .* check the clocks"):
        verify_node_cert(issue(ca), ca.cert_pem, NOW - dt.timedelta(hours=2))


def test_verify_rejects_a_cert_for_another_cluster(ca: RootCA) -> None:
    pem = _leaf_signed_by(
        ca,
        x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, "n1"),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, WORKER_ROLE),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cluster-b"),
            ]
        ),
    )
    with pytest.raises(CertificateError, match="is for cluster 'cluster-b', not this cluster 'cluster-a'"):
        verify_node_cert(pem, ca.cert_pem, NOW)


def test_verify_rejects_the_root_itself_as_a_node_cert(ca: RootCA) -> None:
    with pytest.raises(CertificateError, match="not a node certificate"):
        verify_node_cert(ca.cert_pem, ca.cert_pem, NOW)


def test_naive_now_is_taken_as_utc(ca: RootCA) -> None:
    leaf = issue(ca, now=NOW.replace(tzinfo=None))
    assert load(leaf).not_valid_after_utc == NOW + dt.timedelta(days=90)
