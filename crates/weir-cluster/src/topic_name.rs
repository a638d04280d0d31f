//! Kafka's topic-name rule: 1 to 249 characters from `[a-zA-Z0-9._-]`, and not `.` or
//! `..` (those would name directories that are not the topic's).

use crate::error::TopicNameError;

/// Longest topic name, as in Kafka (leaves room for a partition suffix in 255-byte file
/// names).
pub const MAX_TOPIC_NAME_CHARS: usize = 249;

pub use weir_coordinator::{INTERNAL_TOPIC_PREFIX, is_internal};

/// Checks `name` against the rule.
pub fn validate_topic_name(name: &str) -> Result<(), TopicNameError> {
    if name.is_empty() {
        return Err(TopicNameError::Empty);
    }
    let len = name.chars().count();
    if len > MAX_TOPIC_NAME_CHARS {
        return Err(TopicNameError::TooLong {
            len,
            max: MAX_TOPIC_NAME_CHARS,
        });
    }
    if name == "." || name == ".." {
        return Err(TopicNameError::Dots);
    }
    if let Some(ch) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(TopicNameError::BadCharacter {
            name: name.to_string(),
            ch,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_kafka_names() {
        for name in [
            "a",
            "orders",
            "Orders.v2",
            "my_topic-1",
            "...",
            "__consumer_offsets",
        ] {
            assert_eq!(validate_topic_name(name), Ok(()), "{name}");
        }
        assert_eq!(validate_topic_name(&"x".repeat(249)), Ok(()));
    }

    #[test]
    fn refuses_bad_names_saying_why() {
        assert_eq!(validate_topic_name(""), Err(TopicNameError::Empty));
        assert_eq!(validate_topic_name("."), Err(TopicNameError::Dots));
        assert_eq!(validate_topic_name(".."), Err(TopicNameError::Dots));
        assert_eq!(
            validate_topic_name(&"x".repeat(250)),
            Err(TopicNameError::TooLong { len: 250, max: 249 })
        );
        for (name, ch) in [
            ("a b", ' '),
            ("a/b", '/'),
            ("é", 'é'),
            ("a\0", '\0'),
            ("t:1", ':'),
        ] {
            assert_eq!(
                validate_topic_name(name),
                Err(TopicNameError::BadCharacter {
                    name: name.into(),
                    ch
                })
            );
        }
    }

    #[test]
    fn internal_topics_start_with_two_underscores() {
        assert!(is_internal("__consumer_offsets"));
        assert!(!is_internal("_one"));
    }
}
