//! Serde and schemars derives through srlm-strategy's re-exports, in a crate that depends on
//! srlm-strategy alone (an integration test of the out-of-tree plugin crate); and a strategy
//! whose options are `()`.

use srlm_strategy::prelude::*;
use srlm_strategy::sdk::{options_schema_of, parse_options};

/// How to break ties.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(crate = "srlm_strategy::serde", rename_all = "snake_case")]
#[schemars(crate = "srlm_strategy::schemars")]
pub enum TieBreak {
    /// The earliest sample wins.
    Earliest,
    /// The latest sample wins.
    Latest,
}

options! {
    /// Options with a custom type and serde/schemars field attributes.
    #[derive(Debug, PartialEq)]
    pub struct Options {
        /// Tie-breaking rule.
        pub tie_break: TieBreak = TieBreak::Earliest,
        /// At most this many pairs.
        #[serde(rename = "max-pairs")]
        #[schemars(range(min = 1))]
        pub max_pairs: Option<u32> = None,
    }
}

struct Typed;

impl StrategyPlugin for Typed {
    const NAME: &'static str = "typed";
    const DESCRIPTION: &'static str = "Options with a custom type.";
    type Options = Options;
    fn new(_: Options) -> Result<Self, StrategyError> {
        Ok(Typed)
    }
    fn run_iteration(&mut self, _: &mut Iteration<'_>) -> Result<Vec<Pair>, StrategyError> {
        Ok(Vec::new())
    }
}

struct Plain;

impl StrategyPlugin for Plain {
    const NAME: &'static str = "plain";
    const DESCRIPTION: &'static str = "No options.";
    type Options = ();
    fn new((): ()) -> Result<Self, StrategyError> {
        Ok(Plain)
    }
    fn run_iteration(&mut self, _: &mut Iteration<'_>) -> Result<Vec<Pair>, StrategyError> {
        Ok(Vec::new())
    }
}

#[test]
fn derives_and_attributes_work_through_the_reexports() {
    let o: Options = parse_options(r#"{"tie_break": "latest", "max-pairs": 3}"#).unwrap();
    assert_eq!(
        o,
        Options {
            tie_break: TieBreak::Latest,
            max_pairs: Some(3)
        }
    );
    assert_eq!(parse_options::<Options>("{}").unwrap(), Options::default());
    let e = parse_options::<Options>(r#"{"tie_break": "random"}"#).unwrap_err();
    assert!(e.to_string().contains("unknown variant `random`"), "{e}");
    let schema = options_schema_of::<Typed>();
    for needle in [
        "\"latest\"",
        "\"max-pairs\"",
        "Tie-breaking rule.",
        "\"minimum\": 1",
    ] {
        assert!(schema.contains(needle), "{needle} not in {schema}");
    }
}

#[test]
fn a_strategy_without_options() {
    let schema = options_schema_of::<Plain>();
    assert!(schema.contains("\"properties\": {}"), "{schema}");
    assert_eq!(parse_options::<()>("{}"), Ok(()));
    assert!(parse_options::<()>(r#"{"k": 2}"#).is_err());
}
