//! Identifier generation: branches, tags and Call-IDs ([`IdGen`]).

/// Deterministic generator of branches, tags and Call-IDs (sans-IO: no clock, no OS randomness).
/// Outputs for one generator never repeat (a bijective mix of seed and counter); give each
/// generator in a process a different seed (e.g. from the driver's random source at startup).
#[derive(Debug, Clone)]
pub struct IdGen {
    seed: u64,
    counter: u64,
}

/// SplitMix64 finaliser: a bijection on u64 with good avalanche.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl IdGen {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self { seed, counter: 0 }
    }

    fn next(&mut self) -> u64 {
        self.counter = self.counter.wrapping_add(1);
        mix(self.seed ^ mix(self.counter))
    }

    /// A new RFC 3261 branch (`z9hG4bK` magic cookie + 16 hex digits).
    pub fn branch(&mut self) -> String {
        format!("z9hG4bK{:016x}", self.next())
    }

    /// A new From/To tag.
    pub fn tag(&mut self) -> String {
        format!("{:016x}", self.next())
    }

    /// A new Call-ID `<32 hex>@host`.
    pub fn call_id(&mut self, host: &str) -> String {
        let (a, b) = (self.next(), self.next());
        format!("{a:016x}{b:016x}@{host}")
    }
}
