"""Secrets from Python: ``secrets=`` at create, ``set_secret`` (rotation keeps the
placeholder), ``remove_secret``, ``secrets()`` and the runtime's ``secrets.json`` with
``reload_secrets``; values never come back, bad secrets raise ``InvalidArgument`` naming the
secret. The traffic side (substitution, refusals, every client) is tested in the core
(crates/sqrx-core/tests/it/secrets.rs)."""

import json
import os

import pytest

import sqrx

VALUE = "sk-python-value-8e41c2"


def test_create_with_secrets_shows_placeholders_never_values(net_rt, new_id):
    secrets = {"API_KEY": {"value": VALUE, "allowed_hosts": ["api.example.com"]}}
    with net_rt.create(new_id(), network="all", secrets=secrets) as sb:
        shown = sb.secrets()
        assert [s["name"] for s in shown] == ["API_KEY"]
        assert shown[0]["source"] == "sandbox"
        assert shown[0]["allowed_hosts"] == ["api.example.com"]
        placeholder = shown[0]["placeholder"]
        assert placeholder.startswith("sqrx-secret-")
        assert VALUE not in json.dumps(shown)
        assert sb.exec('printf %s "$API_KEY"').text == placeholder
        assert VALUE not in sb.exec("env").text
        # The trust store points at the runtime's CA.
        env = sb.exec("env").text
        assert "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt" in env
        assert "NODE_EXTRA_CA_CERTS=/etc/sqrx/egress-ca.crt" in env
        assert "BEGIN CERTIFICATE" in sb.exec("cat /etc/sqrx/egress-ca.crt").text

        sb.set_secret("API_KEY", "sk-rotated-1", ["api.example.com"], allow_body=True)
        again = sb.secrets()[0]
        assert again["placeholder"] == placeholder and again["allow_body"] is True
        sb.set_secret("OTHER", "sk-other-2", ["*.example.org"], placeholder="other-placeholder")
        assert sb.exec('printf %s "$OTHER"').text == "other-placeholder"
        assert sb.remove_secret("OTHER") is True
        assert sb.remove_secret("OTHER") is False
        assert [s["name"] for s in sb.secrets()] == ["API_KEY"]


@pytest.mark.parametrize(
    "secrets, needle",
    [
        ({"API_KEY": {"value": VALUE, "allowed_hosts": []}}, "allowed_hosts is empty"),
        ({"1BAD": {"value": VALUE, "allowed_hosts": ["a.com"]}}, "environment variable name"),
        ({"K": {"value": VALUE}}, "allowed_hosts"),
        ({"K": {"value": VALUE, "allowed_hosts": ["a.com"], "hosts": []}}, "unknown field"),
        ("K", "expected a dict"),
    ],
)
def test_bad_secrets_raise_invalid_argument_without_the_value(net_rt, new_id, secrets, needle):
    with pytest.raises(sqrx.InvalidArgument) as e:
        net_rt.create(new_id(), network="all", secrets=secrets)
    assert needle in str(e.value) and e.value.kind == "InvalidArgument"
    assert VALUE not in str(e.value)


def test_secrets_need_a_network(rt, new_id):
    with pytest.raises(sqrx.InvalidArgument) as e:
        rt.create(new_id(), secrets={"K": {"value": VALUE, "allowed_hosts": ["a.com"]}})
    assert "network" in str(e.value)


def test_runtime_secrets_file_is_read_on_reload(tmp_path, netns):
    rt = sqrx.Runtime(tmp_path, net_netns=netns, net_uplink="up0")
    assert rt.secrets() == [] and rt.reload_secrets() == 0
    (tmp_path / "secrets.json").write_text(
        json.dumps({"secrets": {"RT": {"value": VALUE, "allowed_hosts": ["a.example.com"]}}})
    )
    assert rt.reload_secrets() == 1
    shown = rt.secrets()
    assert shown[0]["name"] == "RT" and shown[0]["source"] == "runtime"
    assert VALUE not in json.dumps(shown)
    assert oct(os.stat(tmp_path / "secrets" / "runtime.json").st_mode & 0o777) == "0o600"
    (tmp_path / "secrets.json").write_text('{"secrets": {"RT": {"value": "x"}}}')
    with pytest.raises(sqrx.InvalidArgument) as e:
        rt.reload_secrets()
    assert "secrets.json" in str(e.value)
    assert rt.secrets()[0]["name"] == "RT", "a bad file changes nothing"
