//! What to keep: the policy of SPEC §2, with per-namespace overrides.

use crate::vecmap::VecMap;
use alloc::string::String;

use crate::model::Millis;

/// Default grace period of an unreferenced blob: 10 minutes.
pub const DEFAULT_ORPHAN_GRACE_MS: Millis = 10 * 60 * 1000;
/// Default age after which a temp is stale: 24 hours.
pub const DEFAULT_TEMP_MAX_AGE_MS: Millis = 24 * 60 * 60 * 1000;
/// The longest a kvsweep write may take, end to end, on a store without
/// compare-and-set: grace periods there are at least the store's visibility
/// window plus this (SPEC §6).
pub const LONGEST_WRITE_MS: Millis = 60 * 1000;
/// Default fraction of `max_bytes` that eviction brings the live bytes down to.
pub const DEFAULT_LOW_WATERMARK: f64 = 0.9;

/// Retention for one group: keep the newest `keep_last` entries by `createdAt`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupRule {
    /// How many of the group's newest entries stay; 0 keeps none.
    pub keep_last: u64,
}

/// The rules that apply inside a namespace. Every field is optional; a
/// namespace override replaces the fields it sets.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rules {
    /// Longest an unpinned entry may go unwritten (by `updatedAt`), in
    /// milliseconds; `None`: no limit.
    pub max_age_ms: Option<Millis>,
    /// Most entries the namespace keeps; the least recently accessed
    /// unpinned ones go first. `None`: no limit.
    pub max_entries: Option<u64>,
    /// Most bytes the namespace keeps (values plus distinct blobs): above it,
    /// the least recently accessed unpinned entries go until the bytes fall
    /// to `low_watermark × max_bytes`. `None`: no limit.
    pub max_bytes: Option<u64>,
    /// In (0, 1]; defaults to [`DEFAULT_LOW_WATERMARK`], which also
    /// stands for a value outside it (NaN too): 2.0 would never evict, NaN
    /// evict everything. (JavaScript refuses such values.)
    pub low_watermark: Option<f64>,
    /// Retention rules, by group name.
    pub groups: VecMap<String, GroupRule>,
}

impl Rules {
    /// `self` with every field that `over` sets replaced; groups merge by name.
    pub fn overridden_by(&self, over: &Rules) -> Rules {
        let mut groups = self.groups.clone();
        for (name, rule) in &over.groups {
            groups.insert(name.clone(), *rule);
        }
        Rules {
            max_age_ms: over.max_age_ms.or(self.max_age_ms),
            max_entries: over.max_entries.or(self.max_entries),
            max_bytes: over.max_bytes.or(self.max_bytes),
            low_watermark: over.low_watermark.or(self.low_watermark),
            groups,
        }
    }

    /// The byte count eviction brings a namespace down to, once above `max_bytes`.
    pub fn byte_target(&self) -> Option<u64> {
        let max = self.max_bytes?;
        let mark = self
            .low_watermark
            .filter(|m| *m > 0.0 && *m <= 1.0)
            .unwrap_or(DEFAULT_LOW_WATERMARK);
        // Truncation is a floor for non-negative values.
        Some((max as f64 * mark) as u64)
    }
}

/// The whole policy: global rules, per-namespace overrides and the grace periods.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// The rules of every namespace without an override.
    pub rules: Rules,
    /// Per-namespace overrides, by namespace: each replaces the fields it
    /// sets in `rules`.
    pub namespaces: VecMap<String, Rules>,
    /// How long an unreferenced blob (or dependent entry) is kept after it
    /// was written, in milliseconds; default [`DEFAULT_ORPHAN_GRACE_MS`].
    pub orphan_grace_ms: Millis,
    /// Age in milliseconds at which a temp is stale and deleted; default
    /// [`DEFAULT_TEMP_MAX_AGE_MS`].
    pub temp_max_age_ms: Millis,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            rules: Rules::default(),
            namespaces: VecMap::new(),
            orphan_grace_ms: DEFAULT_ORPHAN_GRACE_MS,
            temp_max_age_ms: DEFAULT_TEMP_MAX_AGE_MS,
        }
    }
}

impl Policy {
    /// The rules in force in `namespace`.
    pub fn rules_for(&self, namespace: &str) -> Rules {
        match self.namespaces.get(namespace) {
            Some(over) => self.rules.overridden_by(over),
            None => self.rules.clone(),
        }
    }
}

impl Policy {
    /// On a store without compare-and-set whose writes take `visibility_ms`
    /// to show everywhere, the shortest grace period that is safe (SPEC §6):
    /// the window plus the longest write. `Err` names the first grace period
    /// shorter than it, and the least it may be.
    pub fn check_grace(
        &self,
        compare_and_set: bool,
        visibility_ms: Millis,
    ) -> Result<(), (&'static str, Millis)> {
        if compare_and_set {
            return Ok(());
        }
        let least = visibility_ms.saturating_add(LONGEST_WRITE_MS);
        if self.orphan_grace_ms < least {
            return Err(("orphanGraceMs", least));
        }
        if self.temp_max_age_ms < least {
            return Err(("tempMaxAgeMs", least));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_override_replaces_only_what_it_sets() {
        let mut p = Policy::default();
        p.rules.max_age_ms = Some(10);
        p.rules.max_entries = Some(5);
        p.namespaces.insert(
            "a".into(),
            Rules {
                max_entries: Some(1),
                ..Rules::default()
            },
        );
        let r = p.rules_for("a");
        assert_eq!(r.max_age_ms, Some(10));
        assert_eq!(r.max_entries, Some(1));
        assert_eq!(p.rules_for("b").max_entries, Some(5));
    }

    #[test]
    fn byte_target_floors_watermark_times_max() {
        let r = Rules {
            max_bytes: Some(1000),
            low_watermark: Some(0.75),
            ..Rules::default()
        };
        assert_eq!(r.byte_target(), Some(750));
        assert_eq!(Rules::default().byte_target(), None);
    }
}
