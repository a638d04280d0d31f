//! The consumer protocol's subscription and assignment: the bytes classic members of a
//! group of protocol type "consumer" exchange through JoinGroup (each member's
//! subscription, for the leader) and SyncGroup (the leader's assignment, for each
//! member). The broker passes them through untouched; they are decoded here only so a
//! described group shows each member's topics and partitions. Anything that does not
//! decode shows as nothing: the bytes are the members' business.
//!
//! Layout (Kafka's `ConsumerProtocolSubscription` and `ConsumerProtocolAssignment`,
//! versions 0 to 3; big-endian, strings with an `i16` length, arrays with an `i32`
//! count): a subscription is `i16 version`, `[string topic]`, then fields not read
//! here; an assignment is `i16 version`, `[string topic, [i32 partition]]`, then user
//! data.

use super::TopicPartitions;

/// A cursor over untrusted bytes: every read checks what is left, and no count read
/// from the bytes sizes an allocation beyond what the bytes could hold.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.bytes.len() < n {
            return None;
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Some(head)
    }

    fn i16(&mut self) -> Option<i16> {
        self.take(2).map(|b| i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self) -> Option<i32> {
        self.take(4)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn string(&mut self) -> Option<String> {
        let len = usize::try_from(self.i16()?).ok()?;
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }

    /// An array count, refused if the rest cannot hold that many elements of at least
    /// `min_size` bytes.
    fn count(&mut self, min_size: usize) -> Option<usize> {
        let n = usize::try_from(self.i32()?).ok()?;
        (n.saturating_mul(min_size) <= self.bytes.len()).then_some(n)
    }
}

/// The topics of a consumer protocol subscription.
pub fn subscribed_topics(bytes: &[u8]) -> Option<Vec<String>> {
    let mut r = Reader { bytes };
    r.i16().filter(|v| *v >= 0)?;
    let n = r.count(2)?;
    let mut topics = Vec::with_capacity(n);
    for _ in 0..n {
        topics.push(r.string()?);
    }
    Some(topics)
}

/// The partitions of a consumer protocol assignment, by topic.
pub fn assigned_partitions(bytes: &[u8]) -> Option<TopicPartitions> {
    let mut r = Reader { bytes };
    r.i16().filter(|v| *v >= 0)?;
    let topics = r.count(6)?;
    let mut out = TopicPartitions::new();
    for _ in 0..topics {
        let topic = r.string()?;
        let n = r.count(4)?;
        let list = out.entry(topic).or_default();
        for _ in 0..n {
            list.push(u32::try_from(r.i32()?).ok()?);
        }
        list.sort_unstable();
        list.dedup();
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as i16).to_be_bytes());
        out.extend_from_slice(s.as_bytes());
    }

    #[test]
    fn a_subscription_and_an_assignment_decode_and_garbage_does_not() {
        // Version 1 subscription: topics, user data (null), owned partitions (none).
        let mut sub = Vec::new();
        sub.extend_from_slice(&1i16.to_be_bytes());
        sub.extend_from_slice(&2i32.to_be_bytes());
        string(&mut sub, "orders");
        string(&mut sub, "payments");
        sub.extend_from_slice(&(-1i32).to_be_bytes());
        sub.extend_from_slice(&0i32.to_be_bytes());
        assert_eq!(
            subscribed_topics(&sub),
            Some(vec!["orders".to_string(), "payments".to_string()])
        );

        let mut asg = Vec::new();
        asg.extend_from_slice(&0i16.to_be_bytes());
        asg.extend_from_slice(&1i32.to_be_bytes());
        string(&mut asg, "orders");
        asg.extend_from_slice(&2i32.to_be_bytes());
        asg.extend_from_slice(&3i32.to_be_bytes());
        asg.extend_from_slice(&1i32.to_be_bytes());
        asg.extend_from_slice(&(-1i32).to_be_bytes());
        let got = assigned_partitions(&asg).unwrap();
        assert_eq!(got["orders"], vec![1, 3]);

        // A count the bytes cannot hold is refused before anything is allocated.
        let mut huge = Vec::new();
        huge.extend_from_slice(&0i16.to_be_bytes());
        huge.extend_from_slice(&i32::MAX.to_be_bytes());
        assert_eq!(assigned_partitions(&huge), None);
        assert_eq!(subscribed_topics(&huge), None);
        assert_eq!(subscribed_topics(&[]), None);
        assert_eq!(assigned_partitions(&asg[..9]), None);
    }
}
