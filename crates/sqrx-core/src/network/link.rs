//! A sandbox's link: a veth pair whose peer is created directly inside the sandbox's network
//! namespace (no create-then-move), addressed as a /30 with the host side as the gateway.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, BorrowedFd};

use rtnetlink::packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkMessage};
use rtnetlink::{AddressMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};

use super::netlink::Netlink;

/// The interface name inside every sandbox.
pub const INSIDE_NAME: &str = "eth0";

/// What one sandbox's link is made of.
#[derive(Debug, Clone)]
pub(crate) struct LinkPlan {
    /// The host side's name.
    pub host_name: String,
    /// The host side's address (the sandbox's gateway).
    pub gateway: Ipv4Addr,
    /// The sandbox's address.
    pub address: Ipv4Addr,
    /// Both sides' MTU.
    pub mtu: u32,
}

fn index_of(nl: &mut Netlink, name: &str) -> io::Result<u32> {
    let msg = LinkUnspec::new_with_name(name).build();
    nl.get(RouteNetlinkMessage::GetLink(msg))?
        .into_iter()
        .find_map(|m| match m {
            RouteNetlinkMessage::NewLink(LinkMessage { header, .. }) => Some(header.index),
            _ => None,
        })
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no interface {name}")))
}

/// Create the pair from `host` (a route socket in the namespace the host side lives in), with
/// the peer born inside `sandbox_ns`, and address and route both sides. The host side is up
/// and forwarding when this returns; so is the sandbox's `eth0`, with its default route.
pub(crate) fn create(
    host: &mut Netlink,
    sandbox_ns: BorrowedFd<'_>,
    plan: &LinkPlan,
) -> io::Result<()> {
    let peer = LinkUnspec::new_with_name(INSIDE_NAME)
        .setns_by_fd(sandbox_ns.as_raw_fd())
        .mtu(plan.mtu)
        .build();
    let veth = LinkVeth::new(&plan.host_name, INSIDE_NAME)
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .mtu(plan.mtu)
        .up()
        .build();
    host.request(
        RouteNetlinkMessage::NewLink(veth),
        NLM_F_CREATE | NLM_F_EXCL,
    )?;
    let index = index_of(host, &plan.host_name)?;
    let addr = AddressMessageBuilder::<Ipv4Addr>::new()
        .index(index)
        .address(plan.gateway, 30)
        .build();
    host.request(
        RouteNetlinkMessage::NewAddress(addr),
        NLM_F_CREATE | NLM_F_EXCL,
    )?;
    let plan = plan.clone();
    crate::sys::netns::run_in(sandbox_ns, move || {
        // No IPv6 inside: no link-local address, no router solicitations, nothing to filter.
        let _ = std::fs::write("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1");
        let _ = std::fs::write("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1");
        let mut inside = Netlink::route()?;
        let index = index_of(&mut inside, INSIDE_NAME)?;
        inside.request(
            RouteNetlinkMessage::SetLink(LinkUnspec::new_with_index(index).up().build()),
            0,
        )?;
        let addr = AddressMessageBuilder::<Ipv4Addr>::new()
            .index(index)
            .address(plan.address, 30)
            .build();
        inside.request(
            RouteNetlinkMessage::NewAddress(addr),
            NLM_F_CREATE | NLM_F_EXCL,
        )?;
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(plan.gateway)
            .output_interface(index)
            .build();
        inside.request(
            RouteNetlinkMessage::NewRoute(route),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    })
}

/// Delete the pair by its host side's name (both ends go); a pair that is already gone (its
/// namespace ended) is not an error.
pub(crate) fn delete(host: &mut Netlink, host_name: &str) -> io::Result<()> {
    let index = match index_of(host, host_name) {
        Ok(i) => i,
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    match host.request(
        RouteNetlinkMessage::DelLink(LinkUnspec::new_with_index(index).build()),
        0,
    ) {
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(()),
        other => other,
    }
}

/// An attribute of the link `msg` asks for (by name or index), picked by `pick`.
fn link_attribute<T>(
    host: &mut Netlink,
    msg: LinkMessage,
    pick: impl Fn(LinkAttribute) -> Option<T>,
) -> Option<T> {
    host.get(RouteNetlinkMessage::GetLink(msg))
        .ok()?
        .into_iter()
        .find_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => l.attributes.into_iter().find_map(&pick),
            _ => None,
        })
}

/// The MTU of the interface `name`, if it exists.
pub(crate) fn mtu_of(host: &mut Netlink, name: &str) -> Option<u32> {
    link_attribute(host, LinkUnspec::new_with_name(name).build(), |a| match a {
        LinkAttribute::Mtu(m) => Some(m),
        _ => None,
    })
}

/// The interface of the namespace's IPv4 default route, if it has one.
pub(crate) fn default_route_interface(host: &mut Netlink) -> Option<String> {
    use rtnetlink::packet_route::route::{RouteAttribute, RouteMessage};
    let mut req = RouteMessage::default();
    req.header.address_family = rtnetlink::packet_route::AddressFamily::Inet;
    let routes = host.dump(RouteNetlinkMessage::GetRoute(req)).ok()?;
    let index = routes.into_iter().find_map(|m| match m {
        RouteNetlinkMessage::NewRoute(r) if r.header.destination_prefix_length == 0 => {
            r.attributes.iter().find_map(|a| match a {
                RouteAttribute::Oif(i) => Some(*i),
                _ => None,
            })
        }
        _ => None,
    })?;
    link_attribute(
        host,
        LinkUnspec::new_with_index(index).build(),
        |a| match a {
            LinkAttribute::IfName(n) => Some(n),
            _ => None,
        },
    )
}
