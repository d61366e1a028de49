"""TLS: the driver talks to an etcd that serves https and requires client certificates."""

from __future__ import annotations

import asyncio
import shutil
import subprocess

import pytest

from pilothouse.interfaces.store import StoreUnavailable
from pilothouse.testing import build_driver
from pilothouse_store_etcd.testing import EtcdCluster, EtcdNotFound, etcd_binary


def _openssl(*args: str, cwd) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def tls_etcd(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make certificates")
    try:
        etcd_binary()
    except EtcdNotFound as exc:
        pytest.skip(str(exc))
    d = tmp_path_factory.mktemp("tls")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
             "/CN=test-ca", "-keyout", "ca.key", "-out", "ca.pem", cwd=d)
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                               "extendedKeyUsage=serverAuth,clientAuth\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=etcd", "-keyout",
             "etcd.key", "-out", "etcd.csr", cwd=d)
    _openssl("x509", "-req", "-in", "etcd.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "2", "-extfile", "ext.cnf", "-out", "etcd.pem", cwd=d)
    files = (str(d / "ca.pem"), str(d / "etcd.pem"), str(d / "etcd.key"))
    cluster = EtcdCluster(size=1, tls=files).start()
    try:
        yield cluster, files
    finally:
        cluster.stop()


def _roundtrip(options: dict) -> int:
    async def body():
        store = build_driver("store", "etcd", options)
        await store.open()
        try:
            kv = await store.create("/tls", b"ok")
            assert (await store.get("/tls")).value == b"ok"
            return kv.mod_revision
        finally:
            await store.close()

    return asyncio.run(body())


def test_mutual_tls(tls_etcd, tmp_path):
    cluster, (ca, cert, key) = tls_etcd
    port = cluster.client_ports[0]
    assert _roundtrip({"endpoints": [f"https://127.0.0.1:{port}"], "prefix": "/tls-ip",
                       "ca_file": ca, "cert_file": cert, "key_file": key}) == 1
    # A host name is resolved by the driver and still verified against the certificate.
    assert _roundtrip({"endpoints": [f"localhost:{port}"], "prefix": "/tls-name",
                       "ca_file": ca, "cert_file": cert, "key_file": key}) == 1


def test_tls_without_client_certificate_is_refused(tls_etcd):
    cluster, (ca, _, _) = tls_etcd
    with pytest.raises(StoreUnavailable, match="cannot use etcd"):
        _roundtrip({"endpoints": cluster.endpoints, "prefix": "/tls-nocert", "ca_file": ca,
                    "dial_timeout": 2.0})


def test_plaintext_client_against_tls_etcd_is_refused(tls_etcd):
    cluster, _ = tls_etcd
    with pytest.raises(StoreUnavailable):
        _roundtrip({"endpoints": cluster.endpoints, "prefix": "/tls-plain",
                    "dial_timeout": 2.0})
