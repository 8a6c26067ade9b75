//! Branches, tags and Call-IDs from a cryptographic generator (ChaCha12, rand's `StdRng`).
//!
//! The core reads no OS randomness itself (like the clock, it comes from outside): the driver
//! seeds it with 32 bytes from the OS (`Seed::from_os`), tests with a fixed number and get
//! reproducible messages. A branch printed on the wire says nothing about the next one: the
//! generator's state cannot be recovered from its output, unlike the xorshift used before,
//! whose every output gave its whole state away (an off-path attacker could then forge a
//! CANCEL or BYE for a call it never saw).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// RFC 3261 §8.1.1.7: branches of RFC 3261 transactions start with this cookie.
pub const BRANCH_COOKIE: &str = "z9hG4bK";

/// 32 bytes of seed for the identifier generator.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Seed(pub [u8; 32]);

impl Seed {
    /// Fresh entropy from the operating system (for the driver, never in tests).
    pub fn from_os() -> Seed {
        Seed(rand::random())
    }
}

/// Tests pick a number and get the same identifiers every run.
impl From<u64> for Seed {
    fn from(value: u64) -> Seed {
        let mut bytes = [0u8; 32];
        StdRng::seed_from_u64(value).fill(&mut bytes);
        Seed(bytes)
    }
}

/// Never print the seed: it would give every identifier away.
impl std::fmt::Debug for Seed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Seed(..)")
    }
}

#[derive(Debug, Clone)]
pub struct IdGen {
    rng: StdRng,
}

impl IdGen {
    pub fn new(seed: Seed) -> Self {
        IdGen {
            rng: StdRng::from_seed(seed.0),
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.rng.random()
    }

    /// `digits` lowercase hex digits (4 bits of randomness each).
    pub fn hex(&mut self, digits: usize) -> String {
        let mut out = String::with_capacity(digits + 16);
        while out.len() < digits {
            out.push_str(&format!("{:016x}", self.next_u64()));
        }
        out.truncate(digits);
        out
    }

    /// 128 random bits after the cookie.
    pub fn branch(&mut self) -> String {
        format!("{BRANCH_COOKIE}{}", self.hex(32))
    }

    /// 64 random bits (RFC 3261 §19.3 asks for at least 32).
    pub fn tag(&mut self) -> String {
        self.hex(16)
    }

    /// 128 random bits.
    pub fn call_id(&mut self) -> String {
        self.hex(32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_distinct_and_well_formed() {
        let mut ids = IdGen::new(7.into());
        let a = ids.branch();
        let b = ids.branch();
        assert_ne!(a, b);
        assert!(a.starts_with("z9hG4bK") && a.len() == 7 + 32, "{a}");
        assert!(a[7..].chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(ids.tag().len(), 16);
        assert_eq!(ids.call_id().len(), 32);
    }

    #[test]
    fn the_same_seed_gives_the_same_ids_and_another_seed_others() {
        let mut a = IdGen::new(42.into());
        let mut b = IdGen::new(42.into());
        let mut c = IdGen::new(43.into());
        let first = a.branch();
        assert_eq!(first, b.branch());
        assert_ne!(first, c.branch());
    }

    #[test]
    fn os_seeds_differ() {
        assert_ne!(Seed::from_os(), Seed::from_os());
    }

    /// The old xorshift64* output revealed its state: each output was the state times an odd
    /// constant, so one branch predicted every later one. `predict` is that attack; it works
    /// on the old generator and fails on this one.
    #[test]
    fn one_output_does_not_predict_the_next() {
        const MULTIPLIER: u64 = 0x2545_F491_4F6C_DD1D;
        const INVERSE: u64 = 0x5907_1D96_D81E_CD35; // MULTIPLIER * INVERSE = 1 mod 2^64
        fn step(mut x: u64) -> u64 {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            x
        }
        let predict = |seen: u64| step(seen.wrapping_mul(INVERSE)).wrapping_mul(MULTIPLIER);
        // The attack against the old generator.
        let mut state = 0x1234_5678_9ABC_DEF1u64;
        let mut old = || {
            state = step(state);
            state.wrapping_mul(MULTIPLIER)
        };
        let seen = old();
        assert_eq!(old(), predict(seen));
        // And against this one.
        let mut ids = IdGen::new(1.into());
        for _ in 0..1000 {
            let seen = ids.next_u64();
            assert_ne!(ids.next_u64(), predict(seen));
        }
    }
}
