//! Branches, tags and Call-IDs from a small seeded generator: the core has no OS randomness and no
//! clock, so the driver passes a seed (tests pass a fixed one and get reproducible messages).

/// RFC 3261 §8.1.1.7: branches of RFC 3261 transactions start with this cookie.
pub const BRANCH_COOKIE: &str = "z9hG4bK";

/// xorshift64* — not cryptographic; tags and branches need uniqueness, not secrecy.
#[derive(Debug, Clone)]
pub struct IdGen {
    state: u64,
}

impl IdGen {
    pub fn new(seed: u64) -> Self {
        IdGen {
            state: seed ^ 0x9E37_79B9_7F4A_7C15 | 1,
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn hex(&mut self, digits: usize) -> String {
        let mut out = String::with_capacity(digits);
        while out.len() < digits {
            out.push_str(&format!("{:016x}", self.next_u64()));
        }
        out.truncate(digits);
        out
    }

    pub fn branch(&mut self) -> String {
        format!("{BRANCH_COOKIE}{}", self.hex(16))
    }

    pub fn tag(&mut self) -> String {
        self.hex(10)
    }

    pub fn call_id(&mut self) -> String {
        self.hex(24)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_distinct_and_well_formed() {
        let mut ids = IdGen::new(7);
        let a = ids.branch();
        let b = ids.branch();
        assert_ne!(a, b);
        assert!(a.starts_with("z9hG4bK") && a.len() == 23);
        assert_eq!(ids.tag().len(), 10);
    }
}
