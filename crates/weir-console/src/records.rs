//! A record's key, value and header values as a page shows them: as text (invalid UTF-8
//! and control characters made visible), as pretty-printed JSON, or as a hex dump, and
//! cut at [`MAX_VALUE_BYTES_SHOWN`]. Every result is plain text that the page escapes.

use std::fmt::Write;

/// Most bytes of one key, value or header value rendered; the rest is cut, saying how
/// much.
pub const MAX_VALUE_BYTES_SHOWN: usize = 16 * 1024;

/// How to show bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Text,
    Json,
    Hex,
}

impl Format {
    pub(crate) const ALL: [Format; 3] = [Format::Text, Format::Json, Format::Hex];

    pub(crate) fn parse(text: &str) -> Option<Format> {
        match text {
            "" | "text" => Some(Format::Text),
            "json" => Some(Format::Json),
            "hex" => Some(Format::Hex),
            _ => None,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::Json => "json",
            Format::Hex => "hex",
        }
    }
}

/// `bytes` shown as `format` (JSON that does not parse is shown as text), and how many
/// bytes were cut.
pub(crate) fn render(bytes: &[u8], format: Format) -> (String, usize) {
    let (shown, cut) = if bytes.len() > MAX_VALUE_BYTES_SHOWN {
        (
            &bytes[..MAX_VALUE_BYTES_SHOWN],
            bytes.len() - MAX_VALUE_BYTES_SHOWN,
        )
    } else {
        (bytes, 0)
    };
    let text = match format {
        Format::Text => text(shown),
        Format::Hex => hex(shown),
        Format::Json if cut == 0 => match serde_json::from_slice::<serde_json::Value>(shown) {
            Ok(value) => serde_json::to_string_pretty(&value).unwrap_or_else(|_| text(shown)),
            Err(_) => text(shown),
        },
        // A cut document does not parse.
        Format::Json => text(shown),
    };
    (text, cut)
}

/// UTF-8 text with invalid bytes as U+FFFD and control characters (other than newline
/// and tab) as their `\u{..}` escapes, so nothing invisible hides in a value.
pub(crate) fn text(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for c in String::from_utf8_lossy(bytes).chars() {
        if c.is_control() && c != '\n' && c != '\t' {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

/// A hex dump: 16 bytes a line, offset, hex, and the printable ASCII.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 4 + 16);
    for (line, chunk) in bytes.chunks(16).enumerate() {
        let _ = write!(out, "{:08x}  ", line * 16);
        for i in 0..16 {
            match chunk.get(i) {
                Some(b) => {
                    let _ = write!(out, "{b:02x} ");
                }
                None => out.push_str("   "),
            }
        }
        out.push(' ');
        out.extend(chunk.iter().map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '.'
            }
        }));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_render_as_text_json_or_hex() {
        assert_eq!(render(b"hello", Format::Text), ("hello".into(), 0));
        assert_eq!(
            render(br#"{"a":[1,2]}"#, Format::Json).0,
            "{\n  \"a\": [\n    1,\n    2\n  ]\n}"
        );
        assert_eq!(render(b"not json", Format::Json).0, "not json");
        assert_eq!(
            render(b"AB\x00", Format::Hex).0,
            "00000000  41 42 00                                         AB.\n"
        );
        assert_eq!(text(b"a\x1b[31mb\xff"), "a\\u{1b}[31mb\u{fffd}");
    }

    #[test]
    fn long_values_are_cut_and_say_so() {
        let big = vec![b'x'; MAX_VALUE_BYTES_SHOWN + 10];
        let (shown, cut) = render(&big, Format::Text);
        assert_eq!((shown.len(), cut), (MAX_VALUE_BYTES_SHOWN, 10));
    }
}
