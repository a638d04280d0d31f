//! The matchers of the exchange types, RabbitMQ's semantics, pure functions:
//! [`topic_matches`] (words split on `.`, `*` one word, `#` zero or more) and
//! [`headers_match`] (`x-match` `all`, `any`, `all-with-x`, `any-with-x`).

use std::collections::BTreeMap;

/// The binding argument that picks how a headers binding matches.
pub const X_MATCH: &str = "x-match";
/// The values `x-match` may have; `all` when it is absent.
pub const X_MATCH_VALUES: [&str; 4] = ["all", "any", "all-with-x", "any-with-x"];

/// A routing key's or binding key's words: split on `.`; the empty key has none (as
/// RabbitMQ splits it), and `a..b` has an empty word in the middle.
fn words(key: &str) -> Vec<&str> {
    if key.is_empty() {
        Vec::new()
    } else {
        key.split('.').collect()
    }
}

/// Whether the topic binding key `pattern` matches `routing_key`: each word of the
/// pattern matches the same word, `*` exactly one word, `#` zero or more words.
pub fn topic_matches(pattern: &str, routing_key: &str) -> bool {
    let pattern = words(pattern);
    let key = words(routing_key);
    // reach[j]: the first i pattern words can match the first j key words.
    let mut reach = vec![false; key.len() + 1];
    reach[0] = true;
    for word in &pattern {
        let next: Vec<bool> = match *word {
            // Zero words, or one more than a prefix `#` already matched.
            "#" => reach
                .iter()
                .scan(false, |any, &r| {
                    *any |= r;
                    Some(*any)
                })
                .collect(),
            "*" => std::iter::once(false)
                .chain(reach.iter().take(key.len()).copied())
                .collect(),
            literal => std::iter::once(false)
                .chain(reach.iter().zip(&key).map(|(&r, &k)| r && k == literal))
                .collect(),
        };
        reach = next;
    }
    reach[key.len()]
}

/// Whether a headers binding with `arguments` matches a message with `headers` (name
/// and value as text; `None`: a header without a value). `x-match` `all` (the default)
/// needs every argument among the headers with the same value, `any` one of them;
/// arguments starting with `x-` take no part unless `x-match` ends in `-with-x`. An
/// argument without a value (empty text) is matched by the header's presence. With no
/// argument taking part, `all` matches every message and `any` none.
pub fn headers_match(
    arguments: &BTreeMap<String, String>,
    headers: &[(String, Option<String>)],
) -> bool {
    let mode = arguments.get(X_MATCH).map(String::as_str).unwrap_or("all");
    let with_x = mode.ends_with("-with-x");
    let any = mode.starts_with("any");
    let mut criteria = arguments
        .iter()
        .filter(|(name, _)| name.as_str() != X_MATCH && (with_x || !name.starts_with("x-")))
        .peekable();
    if criteria.peek().is_none() {
        return !any;
    }
    let mut each = criteria.map(|(name, value)| {
        headers.iter().any(|(header, text)| {
            header == name && (value.is_empty() || text.as_deref() == Some(value.as_str()))
        })
    });
    if any {
        each.any(|hit| hit)
    } else {
        each.all(|hit| hit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RabbitMQ's tutorial 5 and the spec's examples: (pattern, key, matches).
    const TOPIC_CASES: &[(&str, &str, bool)] = &[
        ("*.orange.*", "quick.orange.rabbit", true),
        ("*.*.rabbit", "quick.orange.rabbit", true),
        ("lazy.#", "lazy.orange.elephant", true),
        ("*.orange.*", "lazy.orange.elephant", true),
        ("*.*.rabbit", "lazy.orange.elephant", false),
        ("*.orange.*", "quick.orange.fox", true),
        ("lazy.#", "lazy.brown.fox", true),
        ("*.*.rabbit", "lazy.pink.rabbit", true),
        ("lazy.#", "lazy.pink.rabbit", true),
        ("*.orange.*", "quick.brown.fox", false),
        ("*.*.rabbit", "quick.brown.fox", false),
        ("lazy.#", "quick.brown.fox", false),
        ("*.orange.*", "orange", false),
        ("*.orange.*", "quick.orange.new.rabbit", false),
        ("*.*.rabbit", "quick.orange.new.rabbit", false),
        ("lazy.#", "lazy.orange.new.rabbit", true),
        ("lazy.#", "lazy", true),
        ("#", "", true),
        ("#", "anything.at.all", true),
        ("", "", true),
        ("", "a", false),
        ("*", "", false),
        ("*", "a", true),
        ("*", "a.b", false),
        ("#.#", "a", true),
        ("a.#.b", "a.b", true),
        ("a.#.b", "a.x.y.b", true),
        ("a.#.b", "a.x.y.c", false),
        ("#.b", "b", true),
        ("#.*", "", false),
        ("#.*", "a.b.c", true),
        ("stock.usd.nyse", "stock.usd.nyse", true),
        ("stock.usd.nyse", "stock.eur.nyse", false),
        ("a.*", "a.", true),
        ("a..b", "a..b", true),
    ];

    #[test]
    fn topic_patterns_match_as_rabbitmq_documents() {
        for (pattern, key, expected) in TOPIC_CASES {
            assert_eq!(
                topic_matches(pattern, key),
                *expected,
                "pattern {pattern:?} against key {key:?}"
            );
        }
    }

    /// The definition, by backtracking: the reference the table-driven matcher is checked
    /// against.
    fn reference(pattern: &[&str], key: &[&str]) -> bool {
        match pattern.split_first() {
            None => key.is_empty(),
            Some((&"#", rest)) => (0..=key.len()).any(|skip| reference(rest, &key[skip..])),
            Some((&"*", rest)) => !key.is_empty() && reference(rest, &key[1..]),
            Some((word, rest)) => key.first() == Some(word) && reference(rest, &key[1..]),
        }
    }

    /// Every sequence of up to `max` words over `alphabet`, joined with dots.
    fn all_keys(alphabet: &[&'static str], max: usize) -> Vec<Vec<&'static str>> {
        let mut out = vec![Vec::new()];
        let mut layer = vec![Vec::new()];
        for _ in 0..max {
            let mut next = Vec::new();
            for prefix in &layer {
                for word in alphabet {
                    let mut longer: Vec<&'static str> = prefix.clone();
                    longer.push(word);
                    next.push(longer);
                }
            }
            out.extend(next.iter().cloned());
            layer = next;
        }
        out
    }

    #[test]
    fn topic_matching_agrees_with_the_definition_on_every_small_case() {
        // Every pattern of up to 4 words over {a, b, *, #} against every key of up to 4
        // words over {a, b, c}: 341 x 121 pairs, each checked against backtracking.
        let patterns = all_keys(&["a", "b", "*", "#"], 4);
        let keys = all_keys(&["a", "b", "c"], 4);
        for pattern in &patterns {
            for key in &keys {
                assert_eq!(
                    topic_matches(&pattern.join("."), &key.join(".")),
                    reference(pattern, key),
                    "pattern {pattern:?} against key {key:?}"
                );
            }
        }
    }

    fn args(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, Option<String>)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Some((*v).to_owned())))
            .collect()
    }

    #[test]
    fn headers_bindings_match_all_any_and_with_x() {
        let pdf_report = headers(&[("format", "pdf"), ("type", "report")]);
        let pdf_log = headers(&[("format", "pdf"), ("type", "log")]);
        let zip = headers(&[("format", "zip"), ("x-trace", "1")]);

        let all = args(&[("x-match", "all"), ("format", "pdf"), ("type", "report")]);
        assert!(headers_match(&all, &pdf_report));
        assert!(!headers_match(&all, &pdf_log));
        // `all` is the default.
        let implicit = args(&[("format", "pdf"), ("type", "report")]);
        assert!(headers_match(&implicit, &pdf_report) && !headers_match(&implicit, &pdf_log));

        let any = args(&[("x-match", "any"), ("format", "pdf"), ("type", "report")]);
        assert!(headers_match(&any, &pdf_report));
        assert!(headers_match(&any, &pdf_log));
        assert!(!headers_match(&any, &zip));

        // x- arguments take part only with -with-x.
        let trace = args(&[("x-match", "any"), ("x-trace", "1")]);
        assert!(!headers_match(&trace, &zip));
        let trace = args(&[("x-match", "any-with-x"), ("x-trace", "1")]);
        assert!(headers_match(&trace, &zip));
        let both = args(&[
            ("x-match", "all-with-x"),
            ("x-trace", "1"),
            ("format", "pdf"),
        ]);
        assert!(!headers_match(&both, &zip));

        // No criteria: all matches everything, any nothing.
        assert!(headers_match(&args(&[]), &zip));
        assert!(!headers_match(&args(&[("x-match", "any")]), &zip));

        // An argument without a value asks for the header's presence.
        let present = args(&[("type", "")]);
        assert!(headers_match(&present, &pdf_log) && !headers_match(&present, &zip));
    }
}
