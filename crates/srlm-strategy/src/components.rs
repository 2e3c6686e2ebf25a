//! Strategy components and how often they act: a plugin reports, per iteration, for each
//! switchable part of its algorithm (TSR's Anchored Rejection and Future-Guided Chosen), on
//! how many prompts it **could** have acted and on how many it **did**
//! ([`ComponentUse`]; [`crate::sdk::Iteration::record_component`]). The host writes them
//! to `metrics.jsonl` and its report warns when a component never acted in a whole run, so a
//! "TSR" run that was in effect future-only says so (Wang et al. 2025, Sec. 4.3's ablations
//! name the two components).
//!
//! This module is the one owner of the encoding: two metrics per component,
//! `component/<name>/could_act` and `component/<name>/acted` (counts of prompts), written by
//! [`ComponentUse::metrics`] and read back by [`ComponentUse::from_metrics`]; neither side
//! spells the keys.

/// The judge score range every srlm judge uses (judge points): the lowest score.
pub const SCORE_FLOOR: f64 = 0.0;
/// The highest judge score (judge points).
pub const SCORE_CEILING: f64 = 5.0;

const PREFIX: &str = "component/";
const COULD_ACT: &str = "/could_act";
const ACTED: &str = "/acted";

/// One component's use in one iteration: counts of prompts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentUse {
    /// The component's name, as its option is spelt (`anchored_rejection`).
    pub name: String,
    /// Prompts on which the component could have changed the pair (e.g. Anchored Rejection:
    /// M_i's worst response scored above the judge's floor, so a worse one from M0 exists in
    /// principle).
    pub could_act: u32,
    /// Prompts on which it did change the pair.
    pub acted: u32,
}

impl ComponentUse {
    /// The two metrics that carry this record, `(key, value)`.
    pub fn metrics(&self) -> [(String, f64); 2] {
        [
            (
                format!("{PREFIX}{}{COULD_ACT}", self.name),
                f64::from(self.could_act),
            ),
            (
                format!("{PREFIX}{}{ACTED}", self.name),
                f64::from(self.acted),
            ),
        ]
    }

    /// Whether `key` is one of the metrics [`ComponentUse::metrics`] writes.
    pub fn is_metric_key(key: &str) -> bool {
        key.strip_prefix(PREFIX)
            .is_some_and(|rest| rest.ends_with(COULD_ACT) || rest.ends_with(ACTED))
    }

    /// The components recorded among an iteration's metrics, by name. A component with only
    /// one of its two keys, or a value that is not a non-negative whole number, is left out.
    pub fn from_metrics<'k>(
        metrics: impl IntoIterator<Item = (&'k str, Option<f64>)>,
    ) -> Vec<ComponentUse> {
        use std::collections::BTreeMap;
        let mut by: BTreeMap<&str, (Option<u32>, Option<u32>)> = BTreeMap::new();
        let count = |v: Option<f64>| {
            v.filter(|x| {
                x.is_finite() && *x >= 0.0 && x.fract() == 0.0 && *x <= f64::from(u32::MAX)
            })
            .map(|x| x as u32)
        };
        for (key, value) in metrics {
            let Some(rest) = key.strip_prefix(PREFIX) else {
                continue;
            };
            if let Some(name) = rest.strip_suffix(COULD_ACT) {
                by.entry(name).or_default().0 = count(value);
            } else if let Some(name) = rest.strip_suffix(ACTED) {
                by.entry(name).or_default().1 = count(value);
            }
        }
        by.into_iter()
            .filter_map(|(name, (could_act, acted))| {
                Some(ComponentUse {
                    name: name.to_string(),
                    could_act: could_act?,
                    acted: acted?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_component_round_trips_through_its_two_metrics() {
        let c = ComponentUse {
            name: "anchored_rejection".into(),
            could_act: 7,
            acted: 3,
        };
        let m = c.metrics();
        assert_eq!(m[0], ("component/anchored_rejection/could_act".into(), 7.0));
        assert_eq!(m[1], ("component/anchored_rejection/acted".into(), 3.0));
        assert!(m.iter().all(|(k, _)| ComponentUse::is_metric_key(k)));
        assert!(!ComponentUse::is_metric_key("temporal/pairs_d1"));
        let mut all: Vec<(&str, Option<f64>)> =
            m.iter().map(|(k, v)| (k.as_str(), Some(*v))).collect();
        all.push(("temporal/pairs_d1", Some(4.0)));
        // Half a record, a fraction and a missing value are not components.
        all.push(("component/lonely/acted", Some(1.0)));
        all.push(("component/odd/could_act", Some(1.5)));
        all.push(("component/odd/acted", Some(1.0)));
        all.push(("component/none/could_act", None));
        all.push(("component/none/acted", Some(0.0)));
        assert_eq!(ComponentUse::from_metrics(all), vec![c]);
    }
}
