//! `Rng`: the small deterministic random generator of the simulated mesh
//! (`uart::sim`), also the jitter of the channels' reconnect delays
//! (`channel::Lifecycle`). Seeded, so a run can be repeated. A support
//! type: it depends on nothing else in the crate.

/// A small deterministic generator (xorshift64*): plausible drift needs no
/// cryptographic randomness.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in [-1, 1).
    pub fn signed_unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }
}
