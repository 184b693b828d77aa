//! The claims a router socket may make (PROTOCOL 1.5), as plain decisions.
//!
//! `Claims` is one socket's: its role (agent or backend, never both, never
//! changed), the agent ids it bound and so may speak for, and the bounds on
//! both. `BackendGate` is the switch's: who may say `alive` as `mephisto`.
//! `WsSession` asks them and performs the refusal (an error, or close 1008).

use std::net::IpAddr;

/// What a socket is, once it has said so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Unknown,
    Agent,
    Backend,
}

/// Why a claim of a socket is refused. The `Display` is the error text the
/// socket is sent; `reason()` is the metric label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    #[error("only the backend's socket may send `{0}`")]
    NotBackend(String),
    #[error("this socket has not bound agent `{0}` (say `alive` for it first)")]
    Unbound(String),
    #[error("this socket already speaks for {0} agents, the most one socket may")]
    TooManyIds(usize),
    #[error("agent id of {0} bytes is over the limit of {1}")]
    IdTooLong(usize, usize),
    #[error("a socket keeps its role: an agent socket cannot become the backend, nor the reverse")]
    RoleChange,
}

impl ClaimError {
    pub fn reason(&self) -> &'static str {
        use crate::metrics::refusal;
        match self {
            ClaimError::NotBackend(_) => refusal::NOT_BACKEND,
            ClaimError::Unbound(_) => refusal::UNBOUND_AGENT,
            ClaimError::TooManyIds(_) => refusal::TOO_MANY_IDS,
            ClaimError::IdTooLong(..) => refusal::ID_TOO_LONG,
            ClaimError::RoleChange => refusal::ROLE_CHANGE,
        }
    }
}

/// One socket's role and the agent ids it bound.
#[derive(Debug)]
pub struct Claims {
    role: Role,
    /// A handful at most (`max_ids`): a list is cheaper than a map.
    bound: Vec<String>,
    max_ids: usize,
    max_id_bytes: usize,
}

impl Claims {
    pub fn new(max_ids: usize, max_id_bytes: usize) -> Self {
        Claims {
            role: Role::Unknown,
            bound: Vec::new(),
            max_ids: max_ids.max(1),
            max_id_bytes,
        }
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// The socket says `alive` as the backend (the gate decides apart).
    pub fn claim_backend(&mut self) -> Result<(), ClaimError> {
        match self.role {
            Role::Agent => Err(ClaimError::RoleChange),
            _ => {
                self.role = Role::Backend;
                Ok(())
            }
        }
    }

    /// The socket was replaced as the backend: it speaks for no one now.
    pub fn drop_backend(&mut self) {
        if self.role == Role::Backend {
            self.role = Role::Unknown;
        }
    }

    /// The socket says `alive` or `heartbeat` for agent `id`.
    pub fn claim_agent(&mut self, id: &str) -> Result<(), ClaimError> {
        if self.role == Role::Backend {
            return Err(ClaimError::RoleChange);
        }
        if id.len() > self.max_id_bytes {
            return Err(ClaimError::IdTooLong(id.len(), self.max_id_bytes));
        }
        if !self.bound.iter().any(|b| b == id) {
            if self.bound.len() >= self.max_ids {
                return Err(ClaimError::TooManyIds(self.bound.len()));
            }
            // Room for one more, not the four a first push makes: most
            // sockets bind one id, and every open socket keeps its list.
            self.bound.reserve_exact(1);
            self.bound.push(id.to_string());
        }
        self.role = Role::Agent;
        Ok(())
    }

    /// The socket sends an agent-to-backend packet for agent `id`.
    pub fn speak_for(&self, id: &str) -> Result<(), ClaimError> {
        if self.bound.iter().any(|b| b == id) {
            Ok(())
        } else {
            Err(ClaimError::Unbound(truncated(id)))
        }
    }

    /// The socket sends a packet only the backend may send.
    pub fn backend_only(&self, packet_type: &str) -> Result<(), ClaimError> {
        if self.role == Role::Backend {
            Ok(())
        } else {
            Err(ClaimError::NotBackend(truncated(packet_type)))
        }
    }

    /// The claim on `id` was refused where it was judged (another socket
    /// holds the agent): this socket no longer speaks for it.
    pub fn release(&mut self, id: &str) {
        self.bound.retain(|b| b != id);
    }
}

/// The socket an agent is bound to, as seen by a claim from another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// No socket, or the claimer's own.
    FreeOrSame,
    /// Another socket: `live` if the agent is alive on it and its session
    /// still runs.
    Other { live: bool },
}

/// What the agent does with a claim (`alive`/`heartbeat`) (PROTOCOL 1.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Bind the claimer (a dead holder is closed).
    Grant,
    /// Ask the live holder for a sign of life; the claim waits.
    Probe,
    /// The same claimer's claim waits already: keep the newest packet.
    Wait,
    /// Another claim waits on a probe already: refuse this one.
    Refuse,
}

/// `pending`: a claim waits on a probe, and whether it is this claimer's.
pub fn judge_claim(holder: Holder, pending: Option<bool>) -> Verdict {
    match (holder, pending) {
        (Holder::FreeOrSame, _) => Verdict::Grant,
        (Holder::Other { live: false }, _) => Verdict::Grant,
        (Holder::Other { live: true }, None) => Verdict::Probe,
        (Holder::Other { live: true }, Some(true)) => Verdict::Wait,
        (Holder::Other { live: true }, Some(false)) => Verdict::Refuse,
    }
}

/// A peer's text, cut short for an error message or a log line.
fn truncated(s: &str) -> String {
    const MAX: usize = 64;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// A network: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Cidr, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|e| format!("`{s}`: not an address: {e}"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{s}`: prefix must be 0..={max}"))?,
            None => max,
        };
        Ok(Cidr { addr, prefix })
    }
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        fn bits(ip: IpAddr) -> (u128, u32) {
            match ip {
                IpAddr::V4(v) => (u32::from(v) as u128, 32),
                IpAddr::V6(v) => (u128::from(v), 128),
            }
        }
        let ip = canonical(ip);
        let (a, width) = bits(canonical(self.addr));
        let (b, width_b) = bits(ip);
        if width != width_b {
            return false;
        }
        let shift = width - self.prefix as u32;
        if shift >= width {
            return true;
        }
        (a >> shift) == (b >> shift)
    }
}

/// An IPv4 address seen through an IPv6 socket is the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v) => match v.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        v4 => v4,
    }
}

/// Why a backend claim is refused (closed with 1008).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendRefusal {
    #[error("backend token missing or wrong")]
    Token,
    #[error("the backend may not connect from {0}")]
    NotAllowed(String),
    #[error("the backend is pinned to {0}; another address may not take it over")]
    Pinned(String),
}

/// Who may be the backend (PROTOCOL 1.5): the token's holder when a token
/// is set; else an address in the allow list when one is given; else the
/// address of the first backend, from then on.
#[derive(Debug)]
pub struct BackendGate {
    token_set: bool,
    allow: Vec<Cidr>,
    pinned: Option<Option<IpAddr>>,
}

impl BackendGate {
    /// Bad allow-list entries are refused when the config is loaded.
    pub fn new(token_set: bool, allow: &[String]) -> Result<Self, String> {
        let allow = allow
            .iter()
            .map(|a| a.parse::<Cidr>())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(BackendGate {
            token_set,
            allow,
            pinned: None,
        })
    }

    /// A gate that admits only the token's holder.
    pub fn token_only() -> Self {
        BackendGate {
            token_set: true,
            allow: Vec::new(),
            pinned: None,
        }
    }

    /// `token_ok`: the socket presented the token (true when none is set).
    pub fn admit(&mut self, ip: Option<IpAddr>, token_ok: bool) -> Result<(), BackendRefusal> {
        let ip = ip.map(canonical);
        let name = || ip.map_or_else(|| "an unknown address".to_string(), |i| i.to_string());
        if self.token_set {
            return if token_ok {
                Ok(())
            } else {
                Err(BackendRefusal::Token)
            };
        }
        if !self.allow.is_empty() {
            return match ip {
                Some(i) if self.allow.iter().any(|c| c.contains(i)) => Ok(()),
                _ => Err(BackendRefusal::NotAllowed(name())),
            };
        }
        match self.pinned {
            None => {
                self.pinned = Some(ip);
                Ok(())
            }
            Some(p) if same_host(p, ip) => Ok(()),
            Some(p) => Err(BackendRefusal::Pinned(
                p.map_or_else(|| "an unknown address".to_string(), |i| i.to_string()),
            )),
        }
    }
}

/// `localhost` is one host whether it resolved to 127.0.0.1 or ::1 (a
/// backend that reconnects may get the other); any other address is itself.
fn same_host(a: Option<IpAddr>, b: Option<IpAddr>) -> bool {
    let localhost = |ip: IpAddr| {
        ip == IpAddr::from([127, 0, 0, 1]) || ip == IpAddr::from(std::net::Ipv6Addr::LOCALHOST)
    };
    match (a, b) {
        (Some(a), Some(b)) => a == b || (localhost(a) && localhost(b)),
        (a, b) => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn a_socket_binds_a_few_bounded_ids_and_speaks_only_for_them() {
        let mut c = Claims::new(2, 8);
        assert_eq!(c.speak_for("a"), Err(ClaimError::Unbound("a".into())));
        c.claim_agent("a").unwrap();
        c.claim_agent("a").unwrap();
        c.claim_agent("b").unwrap();
        assert_eq!(c.claim_agent("c"), Err(ClaimError::TooManyIds(2)));
        assert_eq!(c.claim_agent("123456789"), Err(ClaimError::IdTooLong(9, 8)));
        assert!(c.speak_for("a").is_ok() && c.speak_for("b").is_ok());
        assert!(c.speak_for("c").is_err());
        assert_eq!(c.role(), Role::Agent);
    }

    #[test]
    fn a_socket_keeps_its_role() {
        let mut c = Claims::new(4, 64);
        c.claim_agent("a").unwrap();
        assert_eq!(c.claim_backend(), Err(ClaimError::RoleChange));
        assert!(c.backend_only("request_statuses").is_err());

        let mut b = Claims::new(4, 64);
        assert!(b.backend_only("update_status").is_err());
        b.claim_backend().unwrap();
        b.claim_backend().unwrap();
        assert!(b.backend_only("update_status").is_ok());
        assert_eq!(b.claim_agent("a"), Err(ClaimError::RoleChange));
        b.drop_backend();
        assert!(b.backend_only("update_status").is_err());
    }

    #[test]
    fn long_ids_are_cut_short_in_messages() {
        let c = Claims::new(1, 8);
        let long = "é".repeat(100);
        match c.speak_for(&long) {
            Err(ClaimError::Unbound(s)) => assert!(s.len() < 80, "{s}"),
            other => panic!("{other:?}"),
        }
    }

    /// PROTOCOL 1.5 "Bounds" (work a peer can trigger is linear in its
    /// input): a long multibyte id is cut at the last char boundary at or
    /// before byte 64, here byte 63, so the boundary search runs and ends.
    #[test]
    fn an_id_cut_inside_a_char_is_cut_at_the_boundary_before() {
        let c = Claims::new(1, 8);
        let id = format!("a{}", "é".repeat(40));
        // Byte 64 is the second byte of the 32nd `é`: not a boundary.
        assert!(!id.is_char_boundary(64) && id.is_char_boundary(63));
        assert_eq!(
            c.speak_for(&id),
            Err(ClaimError::Unbound(format!("a{}...", "é".repeat(31))))
        );
    }

    /// PROTOCOL 1.5 "Agents": agent ids are bounded in length; an id of
    /// exactly the limit is accepted, one byte more is refused.
    #[test]
    fn an_id_of_exactly_the_limit_is_accepted() {
        let mut c = Claims::new(2, 8);
        assert_eq!(c.claim_agent("12345678"), Ok(()));
        assert!(c.speak_for("12345678").is_ok());
        assert_eq!(c.claim_agent("123456789"), Err(ClaimError::IdTooLong(9, 8)));
    }

    #[test]
    fn a_live_holder_is_probed_a_dead_one_replaced() {
        use Holder::*;
        assert_eq!(judge_claim(FreeOrSame, None), Verdict::Grant);
        assert_eq!(judge_claim(Other { live: false }, None), Verdict::Grant);
        assert_eq!(judge_claim(Other { live: true }, None), Verdict::Probe);
        assert_eq!(judge_claim(Other { live: true }, Some(true)), Verdict::Wait);
        assert_eq!(
            judge_claim(Other { live: true }, Some(false)),
            Verdict::Refuse
        );
        let mut c = Claims::new(1, 8);
        c.claim_agent("a").unwrap();
        c.release("a");
        assert!(c.speak_for("a").is_err());
        c.claim_agent("b").unwrap();
    }

    #[test]
    fn cidrs_parse_and_match() {
        let c: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(c.contains("10.1.200.3".parse().unwrap()));
        assert!(!c.contains("10.2.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.0.9".parse().unwrap()));
        assert!(!c.contains("::1".parse().unwrap()));
        let one: Cidr = "192.168.1.5".parse().unwrap();
        assert!(one.contains("192.168.1.5".parse().unwrap()));
        assert!(!one.contains("192.168.1.6".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nope".parse::<Cidr>().is_err());
    }

    #[test]
    fn without_a_token_the_first_backend_pins_its_address() {
        let mut g = BackendGate::new(false, &[]).unwrap();
        assert!(g.admit(ip("10.0.0.1"), true).is_ok());
        assert!(g.admit(ip("10.0.0.1"), true).is_ok());
        assert!(matches!(
            g.admit(ip("10.0.0.2"), true),
            Err(BackendRefusal::Pinned(_))
        ));
        // localhost is one host, whichever family it resolved to.
        let mut g = BackendGate::new(false, &[]).unwrap();
        assert!(g.admit(ip("127.0.0.1"), true).is_ok());
        assert!(g.admit(ip("::1"), true).is_ok());
        assert!(g.admit(ip("::ffff:127.0.0.1"), true).is_ok());
        assert!(g.admit(ip("127.0.0.2"), true).is_err());
        assert!(g.admit(ip("192.168.0.1"), true).is_err());
    }

    /// PROTOCOL 1.5 "Backend": with no token the backend is pinned to the
    /// first backend's address; an unknown address is not that address,
    /// and a pin on an unknown address admits only an unknown address.
    #[test]
    fn an_unknown_address_is_neither_admitted_by_nor_admitting_a_known_one() {
        let mut g = BackendGate::new(false, &[]).unwrap();
        assert!(g.admit(ip("10.0.0.1"), true).is_ok());
        assert_eq!(
            g.admit(None, true),
            Err(BackendRefusal::Pinned("10.0.0.1".into()))
        );
        assert!(g.admit(ip("10.0.0.1"), true).is_ok());

        let mut g = BackendGate::new(false, &[]).unwrap();
        assert!(g.admit(None, true).is_ok());
        assert!(g.admit(None, true).is_ok());
        assert_eq!(
            g.admit(ip("10.0.0.1"), true),
            Err(BackendRefusal::Pinned("an unknown address".into()))
        );
    }

    #[test]
    fn an_allow_list_replaces_the_pin_and_a_token_replaces_both() {
        let mut g = BackendGate::new(false, &["10.0.0.0/8".into()]).unwrap();
        assert!(g.admit(ip("10.0.0.1"), true).is_ok());
        assert!(g.admit(ip("10.9.0.1"), true).is_ok());
        assert!(matches!(
            g.admit(ip("11.0.0.1"), true),
            Err(BackendRefusal::NotAllowed(_))
        ));
        assert!(g.admit(None, true).is_err());

        let mut g = BackendGate::new(true, &[]).unwrap();
        assert!(g.admit(ip("10.0.0.1"), true).is_ok());
        assert!(g.admit(ip("11.0.0.1"), true).is_ok());
        assert_eq!(g.admit(ip("10.0.0.1"), false), Err(BackendRefusal::Token));
        assert!(BackendGate::new(false, &["x/1".into()]).is_err());
    }
}
