//! A share group's header filter (docs/queues.md § Filters): conditions on a record's
//! headers, all of which must hold. A record that does not match is never handed out;
//! it is finished as soon as the group's window reaches it.
//!
//! Each condition names one header key and what its value must be: exactly a value, start
//! with a prefix, or be one of a set of values. A record without that header (or whose
//! header has a null value) does not match. Where a record carries the key more than once,
//! one of its values matching is enough. Values are compared as bytes, with no decoding.
//!
//! Pure functions: the coordinator calls [`HeaderFilter::matches`] on each record it takes
//! into a window; the limits are checked in [`HeaderFilter::new`], before anything is kept.

use weir_batch::Header;

/// Most conditions one filter holds.
pub const MAX_FILTER_CONDITIONS: usize = 16;
/// Most values one any-of condition lists.
pub const MAX_FILTER_VALUES: usize = 32;
/// Longest header key a condition names.
pub const MAX_FILTER_KEY_BYTES: usize = 255;
/// Longest value (or prefix) a condition compares with.
pub const MAX_FILTER_VALUE_BYTES: usize = 1024;

/// What one header's value must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderMatch {
    /// Exactly this value.
    Equals(String),
    /// Starts with this (an empty prefix: the header is present with a value).
    Prefix(String),
    /// One of these values (1 to [`MAX_FILTER_VALUES`]).
    AnyOf(Vec<String>),
}

/// A condition on the header `key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderCondition {
    pub key: String,
    pub matches: HeaderMatch,
}

impl HeaderCondition {
    /// Whether `value` satisfies the condition.
    fn accepts(&self, value: &[u8]) -> bool {
        match &self.matches {
            HeaderMatch::Equals(v) => value == v.as_bytes(),
            HeaderMatch::Prefix(p) => value.starts_with(p.as_bytes()),
            HeaderMatch::AnyOf(vs) => vs.iter().any(|v| value == v.as_bytes()),
        }
    }

    /// Whether some header named `key` has a value that satisfies the condition.
    pub fn holds(&self, headers: &[Header]) -> bool {
        headers
            .iter()
            .filter(|h| h.key == self.key)
            .filter_map(|h| h.value.as_deref())
            .any(|v| self.accepts(v))
    }

    fn check(&self) -> Result<(), FilterError> {
        if self.key.is_empty() || self.key.len() > MAX_FILTER_KEY_BYTES {
            return Err(FilterError::KeyLength(self.key.len()));
        }
        let values: &[String] = match &self.matches {
            HeaderMatch::Equals(v) | HeaderMatch::Prefix(v) => std::slice::from_ref(v),
            HeaderMatch::AnyOf(vs) => {
                if vs.is_empty() || vs.len() > MAX_FILTER_VALUES {
                    return Err(FilterError::TooManyValues {
                        key: self.key.clone(),
                        count: vs.len(),
                    });
                }
                vs
            }
        };
        if let Some(v) = values.iter().find(|v| v.len() > MAX_FILTER_VALUE_BYTES) {
            return Err(FilterError::ValueTooLong {
                key: self.key.clone(),
                len: v.len(),
            });
        }
        Ok(())
    }
}

/// Conditions that must all hold (AND). An empty filter matches every record: the group
/// has no filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderFilter {
    conditions: Vec<HeaderCondition>,
}

/// Why a filter is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("a filter has at most {MAX_FILTER_CONDITIONS} conditions; this one has {0}")]
    TooManyConditions(usize),
    #[error("a filter's header key is 1 to {MAX_FILTER_KEY_BYTES} bytes; one is {0}")]
    KeyLength(usize),
    #[error(
        "the any-of condition on header {key:?} lists {count} values; it lists 1 to \
         {MAX_FILTER_VALUES}"
    )]
    TooManyValues { key: String, count: usize },
    #[error(
        "a value of the condition on header {key:?} is {len} bytes; at most \
         {MAX_FILTER_VALUE_BYTES}"
    )]
    ValueTooLong { key: String, len: usize },
}

impl HeaderFilter {
    /// The filter of `conditions`, checked against the limits.
    pub fn new(conditions: Vec<HeaderCondition>) -> Result<HeaderFilter, FilterError> {
        if conditions.len() > MAX_FILTER_CONDITIONS {
            return Err(FilterError::TooManyConditions(conditions.len()));
        }
        for c in &conditions {
            c.check()?;
        }
        Ok(HeaderFilter { conditions })
    }

    pub fn conditions(&self) -> &[HeaderCondition] {
        &self.conditions
    }

    /// No conditions: every record matches.
    pub fn is_empty(&self) -> bool {
        self.conditions.is_empty()
    }

    /// Whether a record with `headers` is handed out: every condition holds.
    pub fn matches(&self, headers: &[Header]) -> bool {
        self.conditions.iter().all(|c| c.holds(headers))
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use proptest::prelude::*;

    use super::*;

    fn header(key: &str, value: Option<&str>) -> Header {
        Header {
            key: key.to_owned(),
            value: value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
        }
    }

    fn condition(key: &str, matches: HeaderMatch) -> HeaderCondition {
        HeaderCondition {
            key: key.to_owned(),
            matches,
        }
    }

    fn equals(key: &str, value: &str) -> HeaderCondition {
        condition(key, HeaderMatch::Equals(value.to_owned()))
    }

    #[test]
    fn each_kind_of_condition_matches_what_it_says() {
        let email = [
            header("type", Some("email")),
            header("region", Some("eu-west-1")),
        ];
        let sms = [header("type", Some("sms"))];
        assert!(equals("type", "email").holds(&email));
        assert!(!equals("type", "email").holds(&sms));
        assert!(!equals("type", "emai").holds(&email));

        let eu = condition("region", HeaderMatch::Prefix("eu-".into()));
        assert!(eu.holds(&email));
        assert!(!eu.holds(&sms), "an absent header does not match");
        let present = condition("region", HeaderMatch::Prefix(String::new()));
        assert!(present.holds(&email));
        assert!(!present.holds(&sms));

        let any = condition(
            "type",
            HeaderMatch::AnyOf(vec!["sms".into(), "push".into()]),
        );
        assert!(any.holds(&sms));
        assert!(!any.holds(&email));
    }

    #[test]
    fn a_null_value_or_a_missing_header_never_matches() {
        let null = [header("type", None)];
        assert!(!equals("type", "").holds(&null));
        assert!(!condition("type", HeaderMatch::Prefix(String::new())).holds(&null));
        assert!(!equals("type", "").holds(&[]));
        assert!(equals("type", "").holds(&[header("type", Some(""))]));
    }

    #[test]
    fn conditions_are_anded_and_repeated_keys_need_one_match() {
        let filter = HeaderFilter::new(vec![
            equals("type", "email"),
            condition("tenant", HeaderMatch::Prefix("acme".into())),
        ])
        .unwrap();
        let both = [
            header("tenant", Some("acme-eu")),
            header("type", Some("email")),
        ];
        let one = [header("type", Some("email"))];
        assert!(filter.matches(&both));
        assert!(!filter.matches(&one));
        let repeated = [
            header("type", Some("sms")),
            header("type", Some("email")),
            header("tenant", Some("acme")),
        ];
        assert!(filter.matches(&repeated));
        assert!(HeaderFilter::default().matches(&[]));
        assert!(HeaderFilter::default().is_empty());
    }

    #[test]
    fn limits_are_checked() {
        let many = (0..=MAX_FILTER_CONDITIONS)
            .map(|i| equals(&format!("k{i}"), "v"))
            .collect::<Vec<_>>();
        assert_eq!(
            HeaderFilter::new(many.clone()),
            Err(FilterError::TooManyConditions(MAX_FILTER_CONDITIONS + 1))
        );
        assert!(HeaderFilter::new(many[..MAX_FILTER_CONDITIONS].to_vec()).is_ok());
        assert_eq!(
            HeaderFilter::new(vec![equals("", "v")]),
            Err(FilterError::KeyLength(0))
        );
        let long_key = "k".repeat(MAX_FILTER_KEY_BYTES + 1);
        assert!(HeaderFilter::new(vec![equals(&long_key, "v")]).is_err());
        let long_value = "v".repeat(MAX_FILTER_VALUE_BYTES + 1);
        assert!(HeaderFilter::new(vec![equals("k", &long_value)]).is_err());
        let values = |n: usize| HeaderMatch::AnyOf((0..n).map(|i| i.to_string()).collect());
        assert!(HeaderFilter::new(vec![condition("k", values(0))]).is_err());
        assert!(HeaderFilter::new(vec![condition("k", values(MAX_FILTER_VALUES + 1))]).is_err());
        assert!(HeaderFilter::new(vec![condition("k", values(MAX_FILTER_VALUES))]).is_ok());
        let error = HeaderFilter::new(vec![condition("k", values(40))]).unwrap_err();
        assert!(
            error.to_string().contains("\"k\" lists 40 values"),
            "{error}"
        );
    }

    fn arb_match() -> impl Strategy<Value = HeaderMatch> {
        prop_oneof![
            "[ab]{0,3}".prop_map(HeaderMatch::Equals),
            "[ab]{0,2}".prop_map(HeaderMatch::Prefix),
            prop::collection::vec("[ab]{0,3}", 1..4).prop_map(HeaderMatch::AnyOf),
        ]
    }

    fn arb_headers() -> impl Strategy<Value = Vec<Header>> {
        prop::collection::vec(
            ("[xy]", prop::option::of("[ab]{0,3}")).prop_map(|(k, v)| header(&k, v.as_deref())),
            0..5,
        )
    }

    proptest! {
        /// A filter matches exactly when each of its conditions, alone, matches; and a
        /// condition holds exactly when some header of its key has a value it accepts.
        #[test]
        fn a_filter_is_the_and_of_its_conditions(
            conditions in prop::collection::vec(
                ("[xy]", arb_match()).prop_map(|(k, m)| condition(&k, m)),
                0..4,
            ),
            headers in arb_headers(),
        ) {
            let filter = HeaderFilter::new(conditions.clone()).unwrap();
            let each = conditions.iter().all(|c| {
                HeaderFilter::new(vec![c.clone()]).unwrap().matches(&headers)
            });
            prop_assert_eq!(filter.matches(&headers), each);
            for c in &conditions {
                let by_hand = headers.iter().any(|h| {
                    h.key == c.key
                        && h.value.as_deref().is_some_and(|v| match &c.matches {
                            HeaderMatch::Equals(e) => v == e.as_bytes(),
                            HeaderMatch::Prefix(p) => v.starts_with(p.as_bytes()),
                            HeaderMatch::AnyOf(vs) => vs.iter().any(|e| v == e.as_bytes()),
                        })
                });
                prop_assert_eq!(c.holds(&headers), by_hand);
            }
        }

        /// Adding a condition never lets more records through.
        #[test]
        fn more_conditions_match_fewer_records(
            first in ("[xy]", arb_match()).prop_map(|(k, m)| condition(&k, m)),
            second in ("[xy]", arb_match()).prop_map(|(k, m)| condition(&k, m)),
            headers in arb_headers(),
        ) {
            let one = HeaderFilter::new(vec![first.clone()]).unwrap();
            let two = HeaderFilter::new(vec![first, second]).unwrap();
            prop_assert!(!two.matches(&headers) || one.matches(&headers));
        }
    }
}
