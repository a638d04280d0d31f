//! A share group's header filter as the client sets it
//! ([`ShareGroupSettings::filter`](crate::ShareGroupSettings::filter)) and reads it back
//! ([`ShareGroupInfo::filter`](crate::ShareGroupInfo::filter)), with the text syntax
//! `weir queue configure --filter` takes:
//!
//! - `KEY=VALUE`: the header `KEY` is exactly `VALUE`;
//! - `KEY^=PREFIX`: it starts with `PREFIX` (`KEY^=` alone: the header is present);
//! - `KEY in V1,V2,...`: it is one of the values.
//!
//! The first `=` or ` in ` decides the form, so a key cannot hold either; values are taken
//! as written (no trimming), and any-of values cannot hold a comma. The broker checks the
//! limits (docs/queues.md § Filters).

use std::fmt;
use std::str::FromStr;

use weir_proto::v1 as pb;

/// What one header's value must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderMatch {
    /// Exactly this value.
    Equals(String),
    /// Starts with this (empty: any value).
    Prefix(String),
    /// One of these values.
    AnyOf(Vec<String>),
}

/// A condition on the record header `key`: a record without it never matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderCondition {
    /// The header key.
    pub key: String,
    /// What its value must be.
    pub matches: HeaderMatch,
}

/// Why a condition's text does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("filter {text:?}: {why} (KEY=VALUE, KEY^=PREFIX, or KEY in VALUE1,VALUE2,...)")]
pub struct FilterSyntaxError {
    text: String,
    why: &'static str,
}

impl FromStr for HeaderCondition {
    type Err = FilterSyntaxError;

    fn from_str(text: &str) -> Result<HeaderCondition, FilterSyntaxError> {
        let fail = |why| FilterSyntaxError {
            text: text.to_owned(),
            why,
        };
        let eq = text.find('=');
        let any = text.find(" in ");
        let (key, matches) = match (eq, any) {
            (Some(e), a) if a.is_none_or(|a| e < a) => {
                let (key, value) = (&text[..e], text[e + 1..].to_owned());
                match key.strip_suffix('^') {
                    Some(key) => (key, HeaderMatch::Prefix(value)),
                    None => (key, HeaderMatch::Equals(value)),
                }
            }
            (_, Some(a)) => {
                let list = &text[a + " in ".len()..];
                let values: Vec<String> = list.split(',').map(str::to_owned).collect();
                if list.is_empty() || values.iter().any(String::is_empty) {
                    return Err(fail("an empty value in the any-of list"));
                }
                (&text[..a], HeaderMatch::AnyOf(values))
            }
            (_, None) => return Err(fail("no `=`, `^=` or ` in `")),
        };
        if key.is_empty() {
            return Err(fail("no header key"));
        }
        Ok(HeaderCondition {
            key: key.to_owned(),
            matches,
        })
    }
}

impl fmt::Display for HeaderCondition {
    /// The text syntax [`FromStr`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.matches {
            HeaderMatch::Equals(v) => write!(f, "{}={v}", self.key),
            HeaderMatch::Prefix(p) => write!(f, "{}^={p}", self.key),
            HeaderMatch::AnyOf(vs) => write!(f, "{} in {}", self.key, vs.join(",")),
        }
    }
}

/// The filter a `ConfigureShareGroup` request carries.
pub(crate) fn to_proto(conditions: &[HeaderCondition]) -> pb::HeaderFilter {
    use pb::header_condition::ValueMatch;
    pb::HeaderFilter {
        conditions: conditions
            .iter()
            .map(|c| pb::HeaderCondition {
                key: c.key.clone(),
                value_match: Some(match &c.matches {
                    HeaderMatch::Equals(v) => ValueMatch::Equals(v.clone()),
                    HeaderMatch::Prefix(p) => ValueMatch::Prefix(p.clone()),
                    HeaderMatch::AnyOf(vs) => {
                        ValueMatch::AnyOf(pb::HeaderValues { values: vs.clone() })
                    }
                }),
            })
            .collect(),
    }
}

/// The conditions of a `DescribeShareGroup` answer's filter (none without one). A
/// condition without a match (a newer broker's kind) is left out.
pub(crate) fn from_proto(filter: Option<pb::HeaderFilter>) -> Vec<HeaderCondition> {
    use pb::header_condition::ValueMatch;
    filter
        .map(|f| f.conditions)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|c| {
            let matches = match c.value_match? {
                ValueMatch::Equals(v) => HeaderMatch::Equals(v),
                ValueMatch::Prefix(p) => HeaderMatch::Prefix(p),
                ValueMatch::AnyOf(vs) => HeaderMatch::AnyOf(vs.values),
            };
            Some(HeaderCondition {
                key: c.key,
                matches,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> HeaderCondition {
        text.parse().unwrap()
    }

    #[test]
    fn the_three_forms_parse_and_print_back() {
        let cases = [
            ("type=email", "type", HeaderMatch::Equals("email".into())),
            ("region^=eu-", "region", HeaderMatch::Prefix("eu-".into())),
            ("region^=", "region", HeaderMatch::Prefix(String::new())),
            ("type=", "type", HeaderMatch::Equals(String::new())),
            (
                "type in email,sms",
                "type",
                HeaderMatch::AnyOf(vec!["email".into(), "sms".into()]),
            ),
            // The first operator decides.
            ("query=a=b", "query", HeaderMatch::Equals("a=b".into())),
            ("note=x in y", "note", HeaderMatch::Equals("x in y".into())),
            (
                "kv in a=1,b=2",
                "kv",
                HeaderMatch::AnyOf(vec!["a=1".into(), "b=2".into()]),
            ),
        ];
        for (text, key, matches) in cases {
            let c = parse(text);
            assert_eq!((c.key.as_str(), &c.matches), (key, &matches), "{text}");
            assert_eq!(c.to_string(), text);
        }
    }

    #[test]
    fn what_does_not_parse_says_why() {
        for (text, why) in [
            ("type", "no `=`"),
            ("=email", "no header key"),
            ("^=eu", "no header key"),
            (" in a,b", "no header key"),
            ("type in ", "an empty value"),
            ("type in a,,b", "an empty value"),
        ] {
            let error = text.parse::<HeaderCondition>().unwrap_err();
            assert!(error.to_string().contains(why), "{text}: {error}");
            assert!(error.to_string().contains("KEY=VALUE"), "{error}");
        }
    }

    #[test]
    fn conditions_go_through_the_proto_unchanged() {
        let conditions = vec![
            parse("type=email"),
            parse("region^=eu-"),
            parse("tier in gold,silver"),
        ];
        assert_eq!(from_proto(Some(to_proto(&conditions))), conditions);
        assert!(from_proto(None).is_empty());
    }
}
