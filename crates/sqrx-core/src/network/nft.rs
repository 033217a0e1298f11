//! The runtime's nftables table, driven over netlink: base chains that every sandbox's
//! traffic crosses, and a chain per sandbox that holds its policy, reached through a verdict
//! map keyed by the sandbox's host-side interface.
//!
//! ```text
//! table inet sqrx_<tag>
//!   forward (filter, hook forward, policy accept)
//!     iifname "sq<tag>*" meta nfproto ipv6 drop
//!     iifname "sq<tag>*" ip daddr <refused to every sandbox> drop   (one rule per network)
//!     iifname vmap @sandboxes                                      (jump sb_<slot>)
//!     iifname "sq<tag>*" drop                                      (an interface without a chain)
//!     oifname "sq<tag>*" ct state established,related accept
//!     oifname "sq<tag>*" drop
//!   input (filter, hook input, policy accept)
//!     iifname "sq<tag>*" drop                                      (the host itself)
//!   postrouting (nat, hook postrouting)
//!     ip saddr <pool> oifname != "sq<tag>*" masquerade
//!   sb_<slot>
//!     ip saddr != <its address> drop
//!     all: accept | list: deny rules drop, allow rules accept, tcp reject, drop
//! ```
//!
//! Rules match the interface a packet came in on, never only its source address, and each
//! sandbox chain also checks the source address, so a sandbox cannot take another's policy.
//! Every packet a sandbox sends is checked against its chain (not only the first of a
//! connection), so a policy change cuts connections to destinations it no longer allows.

use std::io;
use std::net::Ipv4Addr;

use netlink_packet_netfilter::nftables::{
    ChainAttribute, ChainMessage, DataAttribute, ExpressionAttribute, Expressions, Hook,
    HookNumber, InetHookNumber, ListAttribute, NfTablesMessage, RuleAttribute, RuleMessage,
    SetAttribute, SetElementAttribute, SetElementList, SetElementMessage, SetFlags, SetMessage,
    TableAttribute, TableMessage, Verdict as NlVerdict, VerdictAttribute,
};
use netlink_packet_netfilter::none::ControlMessage;
use netlink_packet_netfilter::{NetfilterHeader, NetfilterMessage, NetfilterProtoFamily};
use rtnetlink::packet_core::{
    DefaultNla, Emitable, NLA_F_NESTED, NLM_F_ACK, NLM_F_CREATE, NLM_F_REQUEST, NetlinkMessage,
};

use super::netlink::Netlink;
use super::policy::{Destination, NetRule, NetworkPolicy, mask};

const NFNL_SUBSYS_NFTABLES: u16 = 10;

// linux/netfilter/nf_tables.h
const NFT_REG_1: u32 = 1;
const NFT_REG_VERDICT: u32 = 0;
const NFTA_META_DREG: u16 = 1;
const NFTA_META_KEY: u16 = 2;
const NFT_META_IIFNAME: u32 = 6;
const NFT_META_OIFNAME: u32 = 7;
const NFT_META_NFPROTO: u32 = 15;
const NFT_META_L4PROTO: u32 = 16;
const NFTA_PAYLOAD_DREG: u16 = 1;
const NFTA_PAYLOAD_BASE: u16 = 2;
const NFTA_PAYLOAD_OFFSET: u16 = 3;
const NFTA_PAYLOAD_LEN: u16 = 4;
const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
const NFT_PAYLOAD_TRANSPORT_HEADER: u32 = 2;
const NFTA_CMP_SREG: u16 = 1;
const NFTA_CMP_OP: u16 = 2;
const NFTA_CMP_DATA: u16 = 3;
const NFT_CMP_EQ: u32 = 0;
const NFT_CMP_NEQ: u32 = 1;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_BITWISE_SREG: u16 = 1;
const NFTA_BITWISE_DREG: u16 = 2;
const NFTA_BITWISE_LEN: u16 = 3;
const NFTA_BITWISE_MASK: u16 = 4;
const NFTA_BITWISE_XOR: u16 = 5;
const NFTA_IMMEDIATE_DREG: u16 = 1;
const NFTA_IMMEDIATE_DATA: u16 = 2;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_LOOKUP_SET: u16 = 1;
const NFTA_LOOKUP_SREG: u16 = 2;
const NFTA_LOOKUP_DREG: u16 = 3;
const NFTA_CT_DREG: u16 = 1;
const NFTA_CT_KEY: u16 = 2;
const NFT_CT_STATE: u32 = 0;
const NFTA_REJECT_TYPE: u16 = 1;
const NFTA_REJECT_ICMP_CODE: u16 = 2;
const NFT_REJECT_TCP_RST: u32 = 1;
const NFTA_DYNSET_SET_NAME: u16 = 1;
const NFTA_DYNSET_OP: u16 = 3;
const NFTA_DYNSET_SREG_KEY: u16 = 4;
const NFTA_DYNSET_TIMEOUT: u16 = 6;
const NFT_DYNSET_OP_UPDATE: u32 = 1;
/// While packets flow to an address its names opened, it stays open this long after the last
/// one (its DNS TTL governs new connections otherwise).
pub(crate) const IN_USE_GRACE: std::time::Duration = std::time::Duration::from_secs(60);
const NFTA_REDIR_REG_PROTO_MIN: u16 = 1;
const NFTA_REDIR_FLAGS: u16 = 3;
/// `NF_NAT_RANGE_PROTO_SPECIFIED`.
const NAT_RANGE_PROTO_SPECIFIED: u32 = 2;
/// nftables' `ipv4_addr` data type.
const TYPE_IPADDR: u32 = 7;
const NF_DROP: u32 = 0;
const NF_ACCEPT: u32 = 1;
/// nftables' `ifname` data type (for `nft list` output only).
const TYPE_IFNAME: u32 = 41;
/// A verdict map's data type.
const NFT_DATA_VERDICT: u32 = 0xffff_ff00;
const IFNAMSIZ: usize = 16;
const NFPROTO_IPV4: u8 = 2;
const NFPROTO_IPV6: u8 = 10;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
// ct state bits: established and related.
const CT_ESTABLISHED_RELATED: u32 = 0b110;

/// Whether `addr` is refused to every sandbox (see [`ALWAYS_REFUSED`]) or in `pool`.
pub(crate) fn refused(addr: Ipv4Addr, pool: (Ipv4Addr, u8)) -> bool {
    ALWAYS_REFUSED
        .iter()
        .chain(std::iter::once(&pool))
        .any(|(net, prefix)| u32::from(addr) & mask(*prefix) == u32::from(*net))
}

/// Destinations refused to every sandbox whatever its policy: "this" network, loopback,
/// link-local (cloud metadata services live at 169.254.169.254), multicast and reserved.
/// The sandbox pool (other sandboxes) is added by the caller; the host's own addresses are
/// not forwarded at all (the input chain drops them).
pub(crate) const ALWAYS_REFUSED: &[(Ipv4Addr, u8)] = &[
    (Ipv4Addr::new(0, 0, 0, 0), 8),
    (Ipv4Addr::new(127, 0, 0, 0), 8),
    (Ipv4Addr::new(169, 254, 0, 0), 16),
    (Ipv4Addr::new(224, 0, 0, 0), 4),
    (Ipv4Addr::new(240, 0, 0, 0), 4),
];

fn be32(v: u32) -> Vec<u8> {
    v.to_be_bytes().to_vec()
}

fn attr(kind: u16, value: Vec<u8>) -> DefaultNla {
    DefaultNla::new(kind, value)
}

fn nested(kind: u16, inner: &[DefaultNla]) -> DefaultNla {
    let mut buf = vec![0; inner.buffer_len()];
    inner.emit(&mut buf);
    DefaultNla::new(kind | NLA_F_NESTED, buf)
}

fn data_value(kind: u16, bytes: &[u8]) -> DefaultNla {
    nested(kind, &[attr(NFTA_DATA_VALUE, bytes.to_vec())])
}

type Expr = ListAttribute<ExpressionAttribute>;

fn expr(name: &str, attributes: Vec<DefaultNla>) -> Expr {
    Expressions::Other {
        expression_type: name.to_string(),
        attributes,
    }
    .into()
}

fn meta(key: u32) -> Expr {
    expr(
        "meta",
        vec![
            attr(NFTA_META_KEY, be32(key)),
            attr(NFTA_META_DREG, be32(NFT_REG_1)),
        ],
    )
}

fn payload(base: u32, offset: u32, len: u32) -> Expr {
    expr(
        "payload",
        vec![
            attr(NFTA_PAYLOAD_DREG, be32(NFT_REG_1)),
            attr(NFTA_PAYLOAD_BASE, be32(base)),
            attr(NFTA_PAYLOAD_OFFSET, be32(offset)),
            attr(NFTA_PAYLOAD_LEN, be32(len)),
        ],
    )
}

fn cmp(op: u32, data: &[u8]) -> Expr {
    expr(
        "cmp",
        vec![
            attr(NFTA_CMP_SREG, be32(NFT_REG_1)),
            attr(NFTA_CMP_OP, be32(op)),
            data_value(NFTA_CMP_DATA, data),
        ],
    )
}

fn bitwise_and(mask: &[u8]) -> Expr {
    expr(
        "bitwise",
        vec![
            attr(NFTA_BITWISE_SREG, be32(NFT_REG_1)),
            attr(NFTA_BITWISE_DREG, be32(NFT_REG_1)),
            attr(NFTA_BITWISE_LEN, be32(mask.len() as u32)),
            data_value(NFTA_BITWISE_MASK, mask),
            data_value(NFTA_BITWISE_XOR, &vec![0; mask.len()]),
        ],
    )
}

fn verdict(code: u32) -> Expr {
    let v = nested(NFTA_DATA_VERDICT, &[attr(NFTA_VERDICT_CODE, be32(code))]);
    expr(
        "immediate",
        vec![
            attr(NFTA_IMMEDIATE_DREG, be32(NFT_REG_VERDICT)),
            nested(NFTA_IMMEDIATE_DATA, &[v]),
        ],
    )
}

fn vmap_lookup(set: &str) -> Expr {
    let mut name = set.as_bytes().to_vec();
    name.push(0);
    expr(
        "lookup",
        vec![
            attr(NFTA_LOOKUP_SET, name),
            attr(NFTA_LOOKUP_SREG, be32(NFT_REG_1)),
            attr(NFTA_LOOKUP_DREG, be32(NFT_REG_VERDICT)),
        ],
    )
}

fn ct_state() -> Expr {
    expr(
        "ct",
        vec![
            attr(NFTA_CT_KEY, be32(NFT_CT_STATE)),
            attr(NFTA_CT_DREG, be32(NFT_REG_1)),
        ],
    )
}

fn reject_tcp_reset() -> Expr {
    expr(
        "reject",
        vec![
            attr(NFTA_REJECT_TYPE, be32(NFT_REJECT_TCP_RST)),
            attr(NFTA_REJECT_ICMP_CODE, vec![0]),
        ],
    )
}

fn set_lookup(set: &str) -> Expr {
    let mut name = set.as_bytes().to_vec();
    name.push(0);
    expr(
        "lookup",
        vec![
            attr(NFTA_LOOKUP_SET, name),
            attr(NFTA_LOOKUP_SREG, be32(NFT_REG_1)),
        ],
    )
}

/// `update @set { <register 1> timeout <timeout> }`: refresh the element's expiry.
fn refresh_in(set: &str, timeout: std::time::Duration) -> Expr {
    let mut name = set.as_bytes().to_vec();
    name.push(0);
    expr(
        "dynset",
        vec![
            attr(NFTA_DYNSET_SET_NAME, name),
            attr(NFTA_DYNSET_OP, be32(NFT_DYNSET_OP_UPDATE)),
            attr(NFTA_DYNSET_SREG_KEY, be32(NFT_REG_1)),
            attr(
                NFTA_DYNSET_TIMEOUT,
                (timeout.as_millis() as u64).to_be_bytes().to_vec(),
            ),
        ],
    )
}

/// `redirect to :port` (the port loaded into register 1 first).
fn redirect_to(port: u16) -> Vec<Expr> {
    vec![
        expr(
            "immediate",
            vec![
                attr(NFTA_IMMEDIATE_DREG, be32(NFT_REG_1)),
                data_value(NFTA_IMMEDIATE_DATA, &port.to_be_bytes()),
            ],
        ),
        expr(
            "redir",
            vec![
                attr(NFTA_REDIR_REG_PROTO_MIN, be32(NFT_REG_1)),
                attr(NFTA_REDIR_FLAGS, be32(NAT_RANGE_PROTO_SPECIFIED)),
            ],
        ),
    ]
}

fn masquerade() -> Expr {
    expr("masq", vec![])
}

/// `ifname` padded as the kernel stores it.
fn ifname_key(name: &str) -> Vec<u8> {
    let mut k = name.as_bytes().to_vec();
    k.resize(IFNAMSIZ, 0);
    k
}

/// `<iif|oif>name "<prefix>*"`: a comparison of the name's first bytes only.
fn ifname_prefix(key: u32, prefix: &str) -> Vec<Expr> {
    vec![meta(key), cmp(NFT_CMP_EQ, prefix.as_bytes())]
}

/// `ip <daddr|saddr> <net>/<prefix>` (offset 16 or 12 of the IPv4 header).
fn ip_in(offset: u32, net: Ipv4Addr, prefix: u8, op: u32) -> Vec<Expr> {
    let mut e = vec![payload(NFT_PAYLOAD_NETWORK_HEADER, offset, 4)];
    if prefix < 32 {
        e.push(bitwise_and(&mask(prefix).to_be_bytes()));
    }
    e.push(cmp(op, &net.octets()));
    e
}

const SADDR: u32 = 12;
const DADDR: u32 = 16;

/// Names of the runtime's objects.
#[derive(Debug)]
pub(crate) struct Table {
    /// `sqrx_<tag>`.
    pub name: String,
    /// Every host-side interface of this runtime starts with it.
    pub prefix: String,
    /// The address pool, refused as a destination and masqueraded as a source.
    pub pool: (Ipv4Addr, u8),
    /// The proxy's port once the daemon runs (0 before).
    pub proxy: std::sync::atomic::AtomicU16,
}

/// The names set of a sandbox's chain for rules with `port` (`None`: every port).
pub(crate) fn names_set(chain: &str, port: Option<u16>) -> String {
    match port {
        Some(p) => format!("{chain}_n{p}"),
        None => format!("{chain}_n"),
    }
}

/// The names sets of `old` that `new` does not use.
pub(crate) fn stale_sets(chain: &str, old: &NetworkPolicy, new: &NetworkPolicy) -> Vec<String> {
    let keep = name_ports(new);
    name_ports(old)
        .into_iter()
        .filter(|p| !keep.contains(p))
        .map(|p| names_set(chain, p))
        .collect()
}

/// The ports (`None` = any) of a policy's rules that name hosts or domains: one set each.
fn name_ports(policy: &NetworkPolicy) -> Vec<Option<u16>> {
    let mut ports: Vec<Option<u16>> = policy.names().map(|r| r.port).collect();
    ports.sort();
    ports.dedup();
    ports
}

const SANDBOXES: &str = "sandboxes";
/// The verdict map of the nat side: a sandbox's interface to its `sbn_` chain.
const SANDBOXES_NAT: &str = "sandboxes_nat";

/// The runtime's daemon ports (DNS resolver, name-checking proxy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DaemonPorts {
    /// UDP: the resolver.
    pub dns: u16,
    /// TCP: the proxy that checks TLS SNI and HTTP Host.
    pub proxy: u16,
}

/// The nat chain of a sandbox chain.
fn nat_chain(chain: &str) -> String {
    chain.replacen("sb_", "sbn_", 1)
}

/// One sandbox's place in the table.
#[derive(Debug, Clone)]
pub(crate) struct SandboxRules<'a> {
    /// Its chain.
    pub chain: String,
    /// Its host-side interface.
    pub host_name: String,
    /// Its address.
    pub address: Ipv4Addr,
    /// What it may reach.
    pub policy: &'a NetworkPolicy,
    /// Its HTTP and HTTPS (TCP ports 80 and 443, any address) go to the proxy, which hands
    /// them to the egress proxy when they must be read (the sandbox has secrets).
    pub egress: bool,
}

struct Batch {
    table: String,
    msgs: Vec<NetlinkMessage<NetfilterMessage>>,
}

impl Batch {
    fn new(table: &str) -> Self {
        let mut b = Batch {
            table: table.to_string(),
            msgs: Vec::new(),
        };
        b.control(ControlMessage::BatchBegin);
        b
    }

    fn control(&mut self, c: ControlMessage) {
        let mut m = NetlinkMessage::from(NetfilterMessage::new(
            NetfilterHeader::new(NetfilterProtoFamily::Unspec, 0, NFNL_SUBSYS_NFTABLES),
            c,
        ));
        m.header.flags = NLM_F_REQUEST;
        self.msgs.push(m);
    }

    fn push(&mut self, m: NfTablesMessage, flags: u16) {
        let mut msg = NetlinkMessage::from(NetfilterMessage::new(
            NetfilterHeader::new(NetfilterProtoFamily::Inet, 0, 0),
            m,
        ));
        msg.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        self.msgs.push(msg);
    }

    fn table_msg(&self) -> TableMessage {
        TableMessage {
            attributes: vec![TableAttribute::Name(self.table.clone())],
        }
    }

    fn table(&mut self) {
        let msg = self.table_msg();
        self.push(NfTablesMessage::NewTable(msg), NLM_F_CREATE);
    }

    fn delete_table(&mut self) {
        let msg = self.table_msg();
        self.push(NfTablesMessage::DeleteTable(msg), 0);
    }

    /// A chain message of this table with `more` attributes.
    fn chain_msg(&self, name: &str, more: Vec<ChainAttribute>) -> ChainMessage {
        let mut attributes = vec![
            ChainAttribute::Table(self.table.clone()),
            ChainAttribute::Name(name.to_string()),
        ];
        attributes.extend(more);
        ChainMessage { attributes }
    }

    /// A rule message for `chain` of this table with `more` attributes.
    fn rule_msg(&self, chain: &str, more: Vec<RuleAttribute>) -> RuleMessage {
        let mut attributes = vec![
            RuleAttribute::Table(self.table.clone()),
            RuleAttribute::Chain(chain.to_string()),
        ];
        attributes.extend(more);
        RuleMessage { attributes }
    }

    /// A set message of this table with `more` attributes.
    fn set_msg(&self, name: &str, more: Vec<SetAttribute>) -> SetMessage {
        let mut attributes = vec![
            SetAttribute::Table(self.table.clone()),
            SetAttribute::Name(name.to_string()),
        ];
        attributes.extend(more);
        SetMessage { attributes }
    }

    /// Elements of `set` (`None`: the whole set, for a flush).
    fn elements_msg(
        &self,
        set: &str,
        elements: Option<Vec<Vec<SetElementAttribute>>>,
    ) -> SetElementMessage {
        let mut attributes = vec![
            SetElementList::Table(self.table.clone()),
            SetElementList::Set(set.to_string()),
        ];
        if let Some(elements) = elements {
            attributes.push(SetElementList::Elements(
                elements.into_iter().map(ListAttribute::Element).collect(),
            ));
        }
        SetElementMessage { attributes }
    }

    fn chain(&mut self, name: &str, base: Option<(&str, InetHookNumber, i32)>) {
        let mut more = Vec::new();
        if let Some((kind, hook, priority)) = base {
            more.push(ChainAttribute::Type(kind.to_string()));
            more.push(ChainAttribute::Hook(vec![
                Hook::Number(HookNumber::Inet(hook)),
                Hook::Priority(priority as u32),
            ]));
            more.push(ChainAttribute::Policy(NF_ACCEPT));
        }
        let msg = self.chain_msg(name, more);
        self.push(NfTablesMessage::NewChain(msg), NLM_F_CREATE);
    }

    /// Delete every rule of `chain`.
    fn flush(&mut self, chain: &str) {
        let msg = self.rule_msg(chain, vec![]);
        self.push(NfTablesMessage::DeleteRule(msg), 0);
    }

    fn delete_chain(&mut self, chain: &str) {
        let msg = self.chain_msg(chain, vec![]);
        self.push(NfTablesMessage::DeleteChain(msg), 0);
    }

    fn rule(&mut self, chain: &str, exprs: Vec<Expr>) {
        let msg = self.rule_msg(chain, vec![RuleAttribute::Expressions(exprs)]);
        self.push(
            NfTablesMessage::NewRule(msg),
            NLM_F_CREATE | rtnetlink::packet_core::NLM_F_APPEND,
        );
    }

    fn vmap(&mut self, name: &str, id: u32) {
        let msg = self.set_msg(
            name,
            vec![
                SetAttribute::Flags(SetFlags::Map),
                SetAttribute::KeyType(TYPE_IFNAME),
                SetAttribute::KeyLen(IFNAMSIZ as u32),
                SetAttribute::DataType(NFT_DATA_VERDICT),
                SetAttribute::DataLen(0),
                SetAttribute::Id(id),
            ],
        );
        self.push(NfTablesMessage::NewSet(msg), NLM_F_CREATE);
    }

    fn names_set(&mut self, name: &str) {
        let msg = self.set_msg(
            name,
            vec![
                // Eval: rules refresh elements from the packet path.
                SetAttribute::Flags(SetFlags::Timeout | SetFlags::Eval),
                SetAttribute::KeyType(TYPE_IPADDR),
                SetAttribute::KeyLen(4),
                // Required by the kernel (unique within a transaction).
                SetAttribute::Id(self.msgs.len() as u32 + 1),
            ],
        );
        self.push(NfTablesMessage::NewSet(msg), NLM_F_CREATE);
    }

    /// Remove every element of `set` (a delete without elements).
    fn flush_set(&mut self, set: &str) {
        let msg = self.elements_msg(set, None);
        self.push(NfTablesMessage::DeleteSetElement(msg), 0);
    }

    fn delete_set(&mut self, set: &str) {
        let msg = self.set_msg(set, vec![]);
        self.push(NfTablesMessage::DeleteSet(msg), 0);
    }

    fn remove_addresses(&mut self, set: &str, addrs: &[Ipv4Addr]) {
        let keys = addrs
            .iter()
            .map(|a| {
                vec![SetElementAttribute::Key(DataAttribute::Value(
                    a.octets().to_vec(),
                ))]
            })
            .collect();
        let msg = self.elements_msg(set, Some(keys));
        self.push(NfTablesMessage::DeleteSetElement(msg), 0);
    }

    fn addresses(&mut self, set: &str, addrs: &[Ipv4Addr], timeout_ms: u64) {
        let elements = addrs
            .iter()
            .map(|a| {
                vec![
                    SetElementAttribute::Key(DataAttribute::Value(a.octets().to_vec())),
                    SetElementAttribute::Timeout(timeout_ms),
                ]
            })
            .collect();
        let msg = self.elements_msg(set, Some(elements));
        self.push(NfTablesMessage::NewSetElement(msg), NLM_F_CREATE);
    }

    fn element(&mut self, map: &str, host_name: &str, chain: Option<&str>) {
        let mut element = vec![SetElementAttribute::Key(DataAttribute::Value(ifname_key(
            host_name,
        )))];
        if let Some(chain) = chain {
            element.push(SetElementAttribute::Data(DataAttribute::Verdict(vec![
                VerdictAttribute::Code(NlVerdict::Jump),
                VerdictAttribute::Chain(chain.to_string()),
            ])));
        }
        let msg = self.elements_msg(map, Some(vec![element]));
        if chain.is_some() {
            self.push(NfTablesMessage::NewSetElement(msg), NLM_F_CREATE);
        } else {
            self.push(NfTablesMessage::DeleteSetElement(msg), 0);
        }
    }

    fn send(mut self, nl: &mut Netlink) -> io::Result<()> {
        self.control(ControlMessage::BatchEnd);
        nl.batch(self.msgs).map(|_| ())
    }
}

impl Table {
    /// Replace the table with a fresh one holding the base chains and `sandboxes` (a
    /// runtime's start: whatever an earlier run left is gone, nothing is duplicated).
    pub fn rebuild(
        &self,
        nl: &mut Netlink,
        sandboxes: &[SandboxRules<'_>],
        ports: Option<DaemonPorts>,
    ) -> io::Result<()> {
        if let Some(p) = ports {
            self.proxy
                .store(p.proxy, std::sync::atomic::Ordering::Relaxed);
        }
        // Deleting a table that does not exist fails the batch: make sure it exists first.
        let mut ensure = Batch::new(&self.name);
        ensure.table();
        ensure.send(nl)?;
        let mut b = Batch::new(&self.name);
        b.delete_table();
        b.table();
        b.chain("forward", Some(("filter", InetHookNumber::Forward, 0)));
        b.chain("input", Some(("filter", InetHookNumber::LocalIn, 0)));
        b.chain(
            "postrouting",
            Some(("nat", InetHookNumber::PostRouting, 100)),
        );
        b.chain(
            "prerouting",
            Some(("nat", InetHookNumber::PreRouting, -100)),
        );
        b.vmap(SANDBOXES, 1);
        b.vmap(SANDBOXES_NAT, 2);
        for s in sandboxes {
            self.sandbox_into(&mut b, s, false);
        }
        self.base_rules(&mut b, ports);
        b.send(nl)
    }

    fn base_rules(&self, b: &mut Batch, ports: Option<DaemonPorts>) {
        let from = || ifname_prefix(NFT_META_IIFNAME, &self.prefix);
        let to = || ifname_prefix(NFT_META_OIFNAME, &self.prefix);
        let mut r = from();
        r.extend([meta(NFT_META_NFPROTO), cmp(NFT_CMP_EQ, &[NFPROTO_IPV6])]);
        r.push(verdict(NF_DROP));
        b.rule("forward", r);
        let refused = ALWAYS_REFUSED.iter().chain(std::iter::once(&self.pool));
        for (net, prefix) in refused.filter(|_| !crate::weaken::off("net-refused")) {
            let mut r = from();
            r.extend([meta(NFT_META_NFPROTO), cmp(NFT_CMP_EQ, &[NFPROTO_IPV4])]);
            r.extend(ip_in(DADDR, *net, *prefix, NFT_CMP_EQ));
            r.push(verdict(NF_DROP));
            b.rule("forward", r);
        }
        b.rule(
            "forward",
            vec![meta(NFT_META_IIFNAME), vmap_lookup(SANDBOXES)],
        );
        let mut r = from();
        r.push(verdict(NF_DROP));
        b.rule("forward", r);
        let mut r = to();
        r.extend([
            ct_state(),
            bitwise_and(&CT_ESTABLISHED_RELATED.to_ne_bytes()),
            cmp(NFT_CMP_NEQ, &0u32.to_ne_bytes()),
            verdict(NF_ACCEPT),
        ]);
        b.rule("forward", r);
        if !crate::weaken::off("net-refused") {
            let mut r = to();
            r.push(verdict(NF_DROP));
            b.rule("forward", r);
        }
        if let Some(DaemonPorts { dns: port, proxy }) = ports {
            // Every DNS query a sandbox sends, to whatever address, goes to the runtime's
            // resolver, which answers under the sandbox's policy.
            let mut r = from();
            r.extend([
                meta(NFT_META_L4PROTO),
                cmp(NFT_CMP_EQ, &[IPPROTO_UDP]),
                payload(NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2),
                cmp(NFT_CMP_EQ, &53u16.to_be_bytes()),
            ]);
            r.extend(redirect_to(port));
            if !crate::weaken::off("net-dns") {
                b.rule("prerouting", r);
            }
            b.rule(
                "prerouting",
                vec![meta(NFT_META_IIFNAME), vmap_lookup(SANDBOXES_NAT)],
            );
            let mut r = from();
            r.extend([
                meta(NFT_META_L4PROTO),
                cmp(NFT_CMP_EQ, &[IPPROTO_TCP]),
                payload(NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2),
                cmp(NFT_CMP_EQ, &proxy.to_be_bytes()),
                verdict(NF_ACCEPT),
            ]);
            b.rule("input", r);
            let mut r = from();
            r.extend([
                meta(NFT_META_L4PROTO),
                cmp(NFT_CMP_EQ, &[IPPROTO_UDP]),
                payload(NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2),
                cmp(NFT_CMP_EQ, &port.to_be_bytes()),
                verdict(NF_ACCEPT),
            ]);
            b.rule("input", r);
        }
        if !crate::weaken::off("net-input") {
            let mut r = from();
            r.push(verdict(NF_DROP));
            b.rule("input", r);
        }
        let mut r = vec![meta(NFT_META_NFPROTO), cmp(NFT_CMP_EQ, &[NFPROTO_IPV4])];
        r.extend(ip_in(SADDR, self.pool.0, self.pool.1, NFT_CMP_EQ));
        r.extend([
            meta(NFT_META_OIFNAME),
            cmp(NFT_CMP_NEQ, self.prefix.as_bytes()),
        ]);
        r.push(masquerade());
        b.rule("postrouting", r);
    }

    /// Add (or, with `replace`, redo) one sandbox's chain and its map entry.
    fn sandbox_into(&self, b: &mut Batch, s: &SandboxRules<'_>, replace: bool) {
        b.chain(&s.chain, None);
        if replace {
            b.flush(&s.chain);
        }
        // Addresses the resolver answered for allowed names; emptied on a policy change (a
        // name the new policy refuses must not stay reachable until its TTL runs out).
        let ports = name_ports(s.policy);
        for port in &ports {
            let set = names_set(&s.chain, *port);
            b.names_set(&set);
            if replace && !crate::weaken::off("net-flush") {
                b.flush_set(&set);
            }
        }
        let mut r = ip_in(SADDR, s.address, 32, NFT_CMP_NEQ);
        r.push(verdict(NF_DROP));
        b.rule(&s.chain, r);
        match s.policy {
            NetworkPolicy::None => b.rule(&s.chain, vec![verdict(NF_DROP)]),
            NetworkPolicy::All => b.rule(&s.chain, vec![verdict(NF_ACCEPT)]),
            NetworkPolicy::List { allow, deny } => {
                for (rules, code) in [(deny, NF_DROP), (allow, NF_ACCEPT)] {
                    for rule in rules {
                        for r in rule_matches(rule) {
                            let mut r = r;
                            r.push(verdict(code));
                            b.rule(&s.chain, r);
                        }
                    }
                }
                for port in &ports {
                    for proto in [IPPROTO_TCP, IPPROTO_UDP] {
                        let mut r = vec![meta(NFT_META_L4PROTO), cmp(NFT_CMP_EQ, &[proto])];
                        if let Some(p) = port {
                            r.push(payload(NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2));
                            r.push(cmp(NFT_CMP_EQ, &p.to_be_bytes()));
                        }
                        let set = names_set(&s.chain, *port);
                        r.push(payload(NFT_PAYLOAD_NETWORK_HEADER, DADDR, 4));
                        r.push(set_lookup(&set));
                        // An address in use stays open (a download outliving the TTL goes on).
                        r.push(refresh_in(&set, IN_USE_GRACE));
                        r.push(verdict(NF_ACCEPT));
                        b.rule(&s.chain, r);
                    }
                }
                b.rule(
                    &s.chain,
                    vec![
                        meta(NFT_META_L4PROTO),
                        cmp(NFT_CMP_EQ, &[IPPROTO_TCP]),
                        reject_tcp_reset(),
                    ],
                );
                b.rule(&s.chain, vec![verdict(NF_DROP)]);
            }
        }
        b.element(SANDBOXES, &s.host_name, Some(&s.chain));
        // The nat side: connections to HTTP and HTTPS ports of addresses opened by names go
        // to the proxy, which checks the name the client asks for (TLS SNI, HTTP Host).
        let nat = nat_chain(&s.chain);
        b.chain(&nat, None);
        if replace {
            b.flush(&nat);
        }
        let proxy = self.proxy.load(std::sync::atomic::Ordering::Relaxed);
        if s.egress {
            // Every HTTP and HTTPS connection, whatever the address: the egress proxy must see
            // them all.
            for dport in [80u16, 443] {
                if proxy == 0 || !s.policy.has_network() || crate::weaken::off("egress-redirect") {
                    break;
                }
                let mut r = vec![
                    meta(NFT_META_L4PROTO),
                    cmp(NFT_CMP_EQ, &[IPPROTO_TCP]),
                    payload(NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2),
                    cmp(NFT_CMP_EQ, &dport.to_be_bytes()),
                ];
                r.extend(redirect_to(proxy));
                b.rule(&nat, r);
            }
        } else if proxy != 0
            && matches!(s.policy, NetworkPolicy::List { .. })
            && !crate::weaken::off("net-proxy")
        {
            for port in &ports {
                for dport in [80u16, 443] {
                    if port.is_some_and(|p| p != dport) {
                        continue;
                    }
                    let mut r = vec![
                        meta(NFT_META_L4PROTO),
                        cmp(NFT_CMP_EQ, &[IPPROTO_TCP]),
                        payload(NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2),
                        cmp(NFT_CMP_EQ, &dport.to_be_bytes()),
                        payload(NFT_PAYLOAD_NETWORK_HEADER, DADDR, 4),
                        set_lookup(&names_set(&s.chain, *port)),
                    ];
                    r.extend(redirect_to(proxy));
                    b.rule(&nat, r);
                }
            }
        }
        b.element(SANDBOXES_NAT, &s.host_name, Some(&nat));
    }

    /// Does the table exist? (If it did not, it does now, empty.)
    pub fn exists(&self, nl: &mut Netlink) -> io::Result<bool> {
        let mut b = Batch::new(&self.name);
        let msg = b.table_msg();
        b.push(
            NfTablesMessage::NewTable(msg),
            NLM_F_CREATE | rtnetlink::packet_core::NLM_F_EXCL,
        );
        match b.send(nl) {
            Ok(()) => Ok(false),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// Add a sandbox, or replace its policy and delete the names sets it no longer uses
    /// (atomically: no packet sees a half-made chain).
    pub fn put_sandbox(
        &self,
        nl: &mut Netlink,
        s: &SandboxRules<'_>,
        stale_sets: &[String],
    ) -> io::Result<()> {
        let mut b = Batch::new(&self.name);
        self.sandbox_into(&mut b, s, true);
        for set in stale_sets {
            b.delete_set(set);
        }
        b.send(nl)
    }

    /// Let the sandbox of `chain` reach `addrs` (answers for a name its rules with `port`
    /// allow) for `ttl`.
    pub fn allow_addresses(
        &self,
        nl: &mut Netlink,
        chain: &str,
        port: Option<u16>,
        addrs: &[Ipv4Addr],
        ttl: std::time::Duration,
    ) -> io::Result<()> {
        if addrs.is_empty() {
            return Ok(());
        }
        // Adding an element that exists keeps its old expiry: add (so it exists), remove, add
        // again, in one transaction, so a later answer extends an earlier one.
        let set = names_set(chain, port);
        let ms = ttl.as_millis() as u64;
        let mut b = Batch::new(&self.name);
        b.addresses(&set, addrs, ms);
        b.remove_addresses(&set, addrs);
        b.addresses(&set, addrs, ms);
        b.send(nl)
    }

    /// Remove a sandbox's map entry, chain and `sets`. Missing ones are not an error.
    pub fn remove_sandbox(
        &self,
        nl: &mut Netlink,
        host_name: &str,
        chain: &str,
        policy: &NetworkPolicy,
    ) -> io::Result<()> {
        let sets: Vec<String> = name_ports(policy)
            .into_iter()
            .map(|p| names_set(chain, p))
            .collect();
        let mut b = Batch::new(&self.name);
        b.element(SANDBOXES, host_name, None);
        b.element(SANDBOXES_NAT, host_name, None);
        b.flush(chain);
        b.delete_chain(chain);
        b.flush(&nat_chain(chain));
        b.delete_chain(&nat_chain(chain));
        for set in &sets {
            b.delete_set(set);
        }
        match b.send(nl) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                // Some part was gone already (a crash mid-removal): remove what is left, one
                // object at a time.
                let mut b = Batch::new(&self.name);
                b.element(SANDBOXES, host_name, None);
                let _ = b.send(nl);
                let mut b = Batch::new(&self.name);
                b.element(SANDBOXES_NAT, host_name, None);
                let _ = b.send(nl);
                let mut b = Batch::new(&self.name);
                b.flush(&nat_chain(chain));
                b.delete_chain(&nat_chain(chain));
                let _ = b.send(nl);
                let mut b = Batch::new(&self.name);
                b.flush(chain);
                b.delete_chain(chain);
                let _ = b.send(nl);
                let mut b = Batch::new(&self.name);
                for set in &sets {
                    b.delete_set(set);
                }
                match b.send(nl) {
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
                    other => other,
                }
            }
            other => other,
        }
    }
}

/// The matches of one CIDR rule, one per transport protocol (ICMP is never allowed by a list).
/// Rules naming hosts or domains match nothing here: their addresses arrive through the
/// sandbox's resolver.
fn rule_matches(rule: &NetRule) -> Vec<Vec<Expr>> {
    let Destination::Cidr { addr, prefix } = rule.to else {
        return Vec::new();
    };
    [IPPROTO_TCP, IPPROTO_UDP]
        .into_iter()
        .map(|proto| {
            let mut r = vec![meta(NFT_META_L4PROTO), cmp(NFT_CMP_EQ, &[proto])];
            r.extend(ip_in(DADDR, addr, prefix, NFT_CMP_EQ));
            if let Some(port) = rule.port {
                r.push(payload(NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2));
                r.push(cmp(NFT_CMP_EQ, &port.to_be_bytes()));
            }
            r
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsFd, OwnedFd};

    fn fresh_netns() -> OwnedFd {
        std::thread::spawn(|| {
            crate::sys::netns::unshare_net().expect("unshare");
            OwnedFd::from(std::fs::File::open("/proc/thread-self/ns/net").expect("open ns"))
        })
        .join()
        .expect("thread")
    }

    #[test]
    fn every_kind_of_policy_installs_replaces_and_goes() {
        if !sqrx_testkit::privileged("network::nft") {
            return;
        }
        let ns = fresh_netns();
        let table = Table {
            name: "sqrx_test".into(),
            prefix: "sqtest".into(),
            pool: (Ipv4Addr::new(100, 64, 0, 0), 10),
            proxy: Default::default(),
        };
        let policies: Vec<NetworkPolicy> = vec![
            NetworkPolicy::All,
            NetworkPolicy::None,
            NetworkPolicy::allow(&["10.0.0.0/8", "1.2.3.4:443"]).expect("p"),
            NetworkPolicy::allow(&["pypi.org"]).expect("p"),
            NetworkPolicy::allow(&["pypi.org", "*.example.com:443", "10.1.0.0/16"]).expect("p"),
        ];
        crate::sys::netns::run_in(ns.as_fd(), || {
            let mut nl = Netlink::netfilter()?;
            table.rebuild(
                &mut nl,
                &[],
                Some(DaemonPorts {
                    dns: 5353,
                    proxy: 8443,
                }),
            )?;
            let mut old = NetworkPolicy::None;
            for (i, p) in policies.iter().enumerate() {
                let s = SandboxRules {
                    chain: "sb_00001".into(),
                    host_name: "sqtest00001".into(),
                    address: Ipv4Addr::new(100, 64, 0, 6),
                    policy: p,
                    egress: i % 2 == 0,
                };
                let stale = stale_sets("sb_00001", &old, p);
                table
                    .put_sandbox(&mut nl, &s, &stale)
                    .map_err(|e| std::io::Error::other(format!("{p:?}: {e}")))?;
                table
                    .allow_addresses(
                        &mut nl,
                        "sb_00001",
                        None,
                        &[Ipv4Addr::new(10, 9, 9, 9)],
                        std::time::Duration::from_secs(60),
                    )
                    .or_else(|e| {
                        if p.names().any(|r| r.port.is_none()) {
                            Err(e)
                        } else {
                            Ok(())
                        }
                    })?;
                old = p.clone();
            }
            table.remove_sandbox(&mut nl, "sqtest00001", "sb_00001", &old)?;
            Ok(())
        })
        .expect("install");
    }
}
