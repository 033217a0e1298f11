"""Network policies: validation (InvalidArgument with the reason), and the round trip of
``network=`` / ``set_network`` / ``info().network`` on sandboxes whose links live in network
namespaces this test creates (the runtime's ``net_netns``), so no packet leaves the machine."""

import asyncio
import os
import subprocess

import pytest

import sqrx

@pytest.mark.parametrize(
    "policy, needle",
    [
        ("some", "expected \"none\", \"all\""),
        (42, "got int"),
        (["10.0.0.1/8"], "bits set beyond the prefix length"),
        ({"allow": ["10.1.0.0/16"], "deny": ["10.2.0.0/16:0"]}, "port"),
        ({"allow": ["10.1.0.0/16"], "permit": []}, "network policy"),
        ({"allow": "10.1.0.0/16"}, "network policy"),
        (["[::1]:80"], "IPv6"),
    ],
)
def test_bad_policies_raise_invalid_argument(rt, sb, new_id, policy, needle):
    with pytest.raises(sqrx.InvalidArgument) as e:
        rt.create(new_id(), network=policy)
    assert needle in str(e.value) and e.value.kind == "InvalidArgument"
    with pytest.raises(sqrx.InvalidArgument) as e:
        sb.set_network(policy)
    assert needle in str(e.value)
    assert sb.info().network == "none"


def test_default_is_none_without_a_link(sb):
    info = sb.info()
    assert info.network == "none" and info.address is None and info.gateway is None
    assert sb.exec("ls /sys/class/net").text.split() == ["lo"]


def _links(netns):
    """The interfaces in the namespace at path ``netns``."""
    name = os.path.basename(netns)
    out = subprocess.run(["ip", "-n", name, "-o", "link"], check=True, capture_output=True)
    return [line.split(":")[1].strip().split("@")[0] for line in out.stdout.decode().splitlines()]


def test_network_round_trip(net_rt, netns, new_id):
    with net_rt.create(new_id(), network="all") as sb:
        info = sb.info()
        assert info.network == "all"
        assert info.address and info.gateway and info.address != info.gateway
        # The host side of the link is in the test's namespace, not this machine's.
        assert any(n.startswith("sq") for n in _links(netns)), _links(netns)
        sb.set_network(["10.1.0.0/16", "10.2.0.1:443"])
        assert sb.info().network == {"allow": ["10.1.0.0/16", "10.2.0.1:443"], "deny": []}
        assert sb.info().address == info.address, "the same link"
        sb.set_network({"allow": ["10.0.0.0/8"], "deny": ["10.9.0.0/16"]})
        assert sb.info().network == {"allow": ["10.0.0.0/8"], "deny": ["10.9.0.0/16"]}
        sb.set_network("none")
        assert sb.info().network == "none"
        # A new handle reads the same from the runtime.
        assert net_rt.get(sb.id).info().network == "none"
    with net_rt.create(new_id(), network=("10.1.0.0/16",)) as sb:
        assert sb.info().network == {"allow": ["10.1.0.0/16"], "deny": []}
        assert "eth0" in sb.exec("ls /sys/class/net").text.split()
    with net_rt.create(new_id()) as sb:
        assert sb.info().address is None
        sb.set_network("all")
        assert sb.info().network == "all" and sb.info().address is not None


def test_create_async_takes_a_network(net_rt, new_id):
    async def main():
        sb = await net_rt.create_async(new_id(), network={"allow": ["10.1.0.0/16"]})
        try:
            return sb.info().network
        finally:
            await sb.destroy_async()

    assert asyncio.run(main()) == {"allow": ["10.1.0.0/16"], "deny": []}
