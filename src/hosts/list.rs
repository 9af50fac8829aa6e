//! The parsed host list and what the client does with all of it: `-j` (the slot total),
//! `--show-hosts`, and the `--randomize` shuffle.

use super::spec::HostSpec;

/// A parsed host list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostList {
    /// The host entries in list order. Empty is not an error here; distcc then says
    /// "contained no hosts; can't distribute work" and compiles locally.
    pub hosts: Vec<HostSpec>,
    /// `--randomize` appeared: callers apply [`HostList::shuffle`] before choosing.
    pub randomize: bool,
    /// `--localslots=N`: local compile slots (None = distcc's default, 4).
    pub local_slots: Option<u32>,
    /// `--localslots_cpp=N`: local preprocessing slots (None = distcc's default, 8).
    pub local_slots_cpp: Option<u32>,
}

impl HostList {
    /// What `distcc -j` prints: the slots of every host entry, `,down` ones included,
    /// `--localslots` not.
    pub fn total_slots(&self) -> u32 {
        self.hosts
            .iter()
            .fold(0, |sum, host| sum.saturating_add(host.slots))
    }

    /// What `distcc --show-hosts` prints: each entry verbatim, one per line.
    pub fn show_hosts(&self) -> String {
        self.hosts
            .iter()
            .map(|host| format!("{}\n", host.text))
            .collect()
    }

    /// Reorders the hosts for `--randomize`; callers apply it when `randomize` is set.
    /// distcc seeds with its pid so that parallel jobs spread over the boxes; a fixed seed
    /// gives a fixed order, which tests rely on.
    pub fn shuffle(&mut self, seed: u64) {
        let mut state = seed;
        for i in (1..self.hosts.len()).rev() {
            // The modulo bias is irrelevant for lists of a few dozen hosts.
            let j = (splitmix64(&mut state) % (i as u64 + 1)) as usize;
            self.hosts.swap(i, j);
        }
    }
}

/// SplitMix64: tiny, and good enough to spread jobs.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn down_hosts_still_count() {
        assert_eq!(parse("a,down b/3,down localhost").unwrap().total_slots(), 9);
    }

    #[test]
    fn shuffle_is_a_deterministic_permutation() {
        let text = "a b c d e f g h i j";
        let original = parse(text).unwrap();
        let mut one = original.clone();
        let mut two = original.clone();
        one.shuffle(42);
        two.shuffle(42);
        assert_eq!(one, two);
        let mut sorted = texts(&one);
        sorted.sort_unstable();
        assert_eq!(sorted, texts(&original));
        let orders: std::collections::HashSet<Vec<String>> = (0..20)
            .map(|seed| {
                let mut list = original.clone();
                list.shuffle(seed);
                list.hosts.into_iter().map(|h| h.text).collect()
            })
            .collect();
        assert!(orders.len() > 10, "{orders:?}");
        let mut empty = HostList::default();
        empty.shuffle(1);
        assert!(empty.hosts.is_empty());
    }
}
