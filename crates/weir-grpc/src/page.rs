//! Pagination of listings (Google AIP-158): `page_size`, an opaque `page_token` and
//! `next_page_token`, shared by ListTopics, ListGroups and DescribeGroup's members.
//!
//! A listing is sorted by a unique key (topic name, group id, member id) and a page
//! token names the last key of the page before, so the next page starts strictly
//! after it. Nothing is kept on the broker between pages, and an item that exists
//! from the first page to the last is returned exactly once, whatever is created or
//! deleted in between.
//!
//! A token is `<listing>:<key as lowercase hex>`. The listing's name keeps a token of
//! one RPC from being taken by another; the hex keeps any key byte-exact. Clients are
//! told tokens are opaque, so the format may change.

use tonic::Status;

/// Items per page when the request's `page_size` is 0.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
/// Most items per page: a larger `page_size` is clamped to this.
pub const MAX_PAGE_SIZE: u32 = 1000;
/// Longest page token accepted, checked before decoding: a listing name and a hex key
/// of a few hundred bytes fit well within it.
pub const MAX_PAGE_TOKEN_CHARS: usize = 4096;

/// Which listing a token belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Listing {
    Topics,
    Groups,
    GroupMembers,
}

impl Listing {
    fn name(self) -> &'static str {
        match self {
            Listing::Topics => "topics",
            Listing::Groups => "groups",
            Listing::GroupMembers => "members",
        }
    }
}

/// The page size in force for a request's `page_size`.
pub(crate) fn effective_page_size(page_size: u32) -> usize {
    match page_size {
        0 => DEFAULT_PAGE_SIZE as usize,
        n => n.min(MAX_PAGE_SIZE) as usize,
    }
}

/// The token of the page that starts after `last_key`.
fn encode(listing: Listing, last_key: &str) -> String {
    let mut token = String::with_capacity(listing.name().len() + 1 + 2 * last_key.len());
    token.push_str(listing.name());
    token.push(':');
    for byte in last_key.bytes() {
        token.push_str(&format!("{byte:02x}"));
    }
    token
}

/// The key a token resumes after; `None` for the empty token (the first page).
fn decode(listing: Listing, token: &str) -> Result<Option<String>, Status> {
    if token.is_empty() {
        return Ok(None);
    }
    let malformed = || {
        crate::status::invalid(format!(
            "page_token is not a token this broker gave for a {} listing: pass back \
             next_page_token exactly as received, or an empty token for the first page",
            listing.name()
        ))
    };
    if token.len() > MAX_PAGE_TOKEN_CHARS {
        return Err(crate::status::invalid(format!(
            "page_token is {} characters long; a valid one has at most \
             {MAX_PAGE_TOKEN_CHARS}",
            token.len()
        )));
    }
    let hex = token
        .strip_prefix(listing.name())
        .and_then(|rest| rest.strip_prefix(':'))
        .ok_or_else(malformed)?;
    if hex.is_empty() || hex.len() % 2 != 0 {
        return Err(malformed());
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .filter(|pair| pair.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(malformed)?;
    String::from_utf8(bytes).map(Some).map_err(|_| malformed())
}

/// One page of `items` (in any order: they are sorted by `key` here, which must be
/// unique), and the token of the next page, empty on the last.
pub(crate) fn paginate<T>(
    listing: Listing,
    mut items: Vec<T>,
    key: impl Fn(&T) -> &str,
    page_size: u32,
    page_token: &str,
) -> Result<(Vec<T>, String), Status> {
    let after = decode(listing, page_token)?;
    let size = effective_page_size(page_size);
    items.sort_by(|a, b| key(a).cmp(key(b)));
    let start = match &after {
        Some(after) => items.partition_point(|item| key(item) <= after.as_str()),
        None => 0,
    };
    let end = start.saturating_add(size).min(items.len());
    let next_page_token = if end < items.len() {
        encode(listing, key(&items[end - 1]))
    } else {
        String::new()
    };
    items.truncate(end);
    items.drain(..start);
    Ok((items, next_page_token))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("t{i:03}")).collect()
    }

    fn page(items: Vec<String>, size: u32, token: &str) -> Result<(Vec<String>, String), Status> {
        paginate(Listing::Topics, items, |s| s.as_str(), size, token)
    }

    #[test]
    fn pages_cover_every_item_once_in_order() {
        let all = names(25);
        let mut seen = Vec::new();
        let mut token = String::new();
        let mut pages = 0;
        loop {
            let (items, next) = page(all.clone(), 7, &token).unwrap();
            assert!(items.len() <= 7);
            seen.extend(items);
            pages += 1;
            if next.is_empty() {
                break;
            }
            token = next;
        }
        assert_eq!(pages, 4);
        assert_eq!(seen, all);
    }

    #[test]
    fn items_created_or_deleted_between_pages_do_not_shift_the_others() {
        let all = names(10);
        let (first, token) = page(all.clone(), 4, "").unwrap();
        assert_eq!(first, all[..4]);
        // t001 (already returned) is deleted and t0025 (before the token) is created.
        let mut changed: Vec<String> = all.iter().filter(|n| *n != "t001").cloned().collect();
        changed.push("t0025".to_owned());
        let (second, _) = page(changed, 4, &token).unwrap();
        assert_eq!(second, all[4..8]);
    }

    #[test]
    fn sizes_default_and_clamp() {
        assert_eq!(effective_page_size(0), DEFAULT_PAGE_SIZE as usize);
        assert_eq!(effective_page_size(5), 5);
        assert_eq!(effective_page_size(u32::MAX), MAX_PAGE_SIZE as usize);
        let (items, next) = page(names(1500), u32::MAX, "").unwrap();
        assert_eq!(items.len(), MAX_PAGE_SIZE as usize);
        assert!(!next.is_empty());
    }

    #[test]
    fn keys_round_trip_byte_exact() {
        for key in ["a", "x.y-z_0", "\u{e9}t\u{e9}", "with:colon"] {
            let token = encode(Listing::GroupMembers, key);
            assert_eq!(
                decode(Listing::GroupMembers, &token).unwrap().as_deref(),
                Some(key)
            );
        }
    }

    #[test]
    fn malformed_or_foreign_tokens_are_invalid_arguments() {
        let groups_token = encode(Listing::Groups, "g");
        let too_long = format!("topics:{}", "61".repeat(MAX_PAGE_TOKEN_CHARS));
        for token in [
            "t005",
            "topics:",
            "topics:6",
            "topics:zz",
            "topics:6G",
            "topics:+1",
            "topics:ff",
            groups_token.as_str(),
            too_long.as_str(),
        ] {
            let error = page(names(3), 0, token).unwrap_err();
            assert_eq!(error.code(), tonic::Code::InvalidArgument, "{token}");
        }
    }
}
