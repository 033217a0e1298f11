//! Blocking netlink requests: a message (or an nftables batch) out, the kernel's
//! acknowledgements back. Sandbox creation is synchronous and a request takes microseconds,
//! so no async runtime is involved; the messages themselves come from `rtnetlink`'s builders
//! and `netlink-packet-netfilter`.

use std::io;

use netlink_packet_netfilter::NetfilterMessage;
use rtnetlink::packet_core::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkDeserializable, NetlinkMessage, NetlinkPayload,
    NetlinkSerializable,
};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::sys::{Socket, protocols};

/// A netlink socket of one protocol, in the network namespace it was created in.
pub(crate) struct Netlink {
    sock: Socket,
    seq: u32,
}

impl Netlink {
    /// A route-netlink socket in the calling thread's network namespace.
    pub fn route() -> io::Result<Self> {
        Self::new(protocols::NETLINK_ROUTE)
    }

    /// An nftables (netfilter) socket in the calling thread's network namespace.
    pub fn netfilter() -> io::Result<Self> {
        Self::new(protocols::NETLINK_NETFILTER)
    }

    fn new(protocol: isize) -> io::Result<Self> {
        let mut sock = Socket::new(protocol)?;
        sock.bind_auto()?;
        sock.connect(&rtnetlink::sys::SocketAddr::new(0, 0))?;
        Ok(Netlink { sock, seq: 0 })
    }

    /// Send one route message and wait for its acknowledgement.
    pub fn request(&mut self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
        let mut m = NetlinkMessage::from(msg);
        m.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        self.transact(vec![m]).map(|_| ())
    }

    /// Send one route request and return the kernel's answers (a get of one object).
    pub fn get(&mut self, msg: RouteNetlinkMessage) -> io::Result<Vec<RouteNetlinkMessage>> {
        let mut m = NetlinkMessage::from(msg);
        m.header.flags = NLM_F_REQUEST | NLM_F_ACK;
        self.transact(vec![m])
    }

    /// Dump a kind of route object (every route, every link).
    pub fn dump(&mut self, msg: RouteNetlinkMessage) -> io::Result<Vec<RouteNetlinkMessage>> {
        let mut m = NetlinkMessage::from(msg);
        m.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        self.transact(vec![m])
    }

    /// Send an nftables batch (begin, the messages, end) and wait until the kernel has
    /// acknowledged every message that asked for it; the first error fails the whole batch
    /// (the kernel applies a batch entirely or not at all).
    pub fn batch(
        &mut self,
        msgs: Vec<NetlinkMessage<NetfilterMessage>>,
    ) -> io::Result<Vec<NetfilterMessage>> {
        self.transact(msgs)
    }

    fn transact<T>(&mut self, mut msgs: Vec<NetlinkMessage<T>>) -> io::Result<Vec<T>>
    where
        T: NetlinkSerializable + NetlinkDeserializable + std::fmt::Debug,
    {
        let mut buf = Vec::new();
        let mut waiting = Vec::new();
        for m in &mut msgs {
            self.seq = self.seq.wrapping_add(1);
            m.header.sequence_number = self.seq;
            m.finalize();
            if m.header.flags & (NLM_F_ACK | NLM_F_DUMP) != 0 {
                waiting.push(self.seq);
            }
            let start = buf.len();
            buf.resize(start + m.buffer_len(), 0);
            m.serialize(&mut buf[start..]);
        }
        self.sock.send(&buf, 0)?;
        let mut answers = Vec::new();
        let mut failure: Option<io::Error> = None;
        while !waiting.is_empty() {
            let (reply, _) = self.sock.recv_from_full()?;
            let mut at = 0;
            while at < reply.len() {
                let msg = NetlinkMessage::<T>::deserialize(&reply[at..]).map_err(|e| {
                    io::Error::new(io::ErrorKind::InvalidData, format!("netlink reply: {e}"))
                })?;
                let len = msg.header.length as usize;
                let seq = msg.header.sequence_number;
                match msg.payload {
                    NetlinkPayload::Error(e) => {
                        waiting.retain(|s| *s != seq);
                        if let Some(code) = e.code
                            && failure.is_none()
                        {
                            failure = Some(io::Error::from_raw_os_error(-code.get()));
                        }
                    }
                    NetlinkPayload::InnerMessage(inner) => answers.push(inner),
                    NetlinkPayload::Done(_) => waiting.retain(|s| *s != seq),
                    _ => {}
                }
                if len == 0 {
                    break;
                }
                at += (len + 3) & !3;
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(answers),
        }
    }
}
