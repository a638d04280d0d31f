//! Test inputs for the data directory's framed files: what a disk, a crash or another
//! program could leave under their names, for property tests of their loaders.

use proptest::prelude::*;
use weir_log::framed_file::Framing;

/// Bytes under a framed file's name: anything at all; a valid file of `framing` with
/// `payload`, then bytes flipped, cut or added; or a valid frame around a damaged or
/// arbitrary payload (which only the payload's decoder can refuse).
pub(crate) fn damaged_files(framing: Framing, payload: Vec<u8>) -> BoxedStrategy<Vec<u8>> {
    let valid = framing.encode(&payload);
    let damaged_payload = damage(payload);
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..200),
        damage(valid),
        prop_oneof![
            damaged_payload,
            proptest::collection::vec(any::<u8>(), 0..200)
        ]
        .prop_map(move |payload| framing.encode(&payload)),
    ]
    .boxed()
}

/// `bytes` with up to three bytes flipped, maybe cut short, and up to three added.
fn damage(bytes: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::collection::vec((any::<usize>(), 1..=u8::MAX), 0..4),
        proptest::option::of(any::<usize>()),
        proptest::collection::vec(any::<u8>(), 0..4),
    )
        .prop_map(move |(flips, cut, tail)| {
            let mut bytes = bytes.clone();
            if !bytes.is_empty() {
                for (at, xor) in flips {
                    let at = at % bytes.len();
                    bytes[at] ^= xor;
                }
            }
            if let Some(cut) = cut {
                bytes.truncate(cut % (bytes.len() + 1));
            }
            bytes.extend(tail);
            bytes
        })
}
