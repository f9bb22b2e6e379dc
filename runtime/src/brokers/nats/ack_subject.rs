//! What a JetStream message's acknowledgement subject says about it. JetStream delivers each message with a reply
//! subject of the form ADR-15 defines, `$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer
//! seq>.<published ns>.<pending>` (with `<domain>.<account hash>.` after `$JS.ACK.` on newer servers, and possibly
//! more tokens after), which is all a consumer knows of its place in the stream. Read here rather than through
//! async-nats's `Message::info`, whose timestamp type changes with a feature of async-nats (`chrono`), and so
//! that a JetStream message received as a core message (a push consumer's subscription) is read the same way.
//! A subject that is not one (a core message's reply inbox, a malformed subject) reads as none: never an error.

/// The facts of a JetStream message's acknowledgement subject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AckSubject<'a> {
    pub(crate) stream: &'a str,
    pub(crate) consumer: &'a str,
    /// How many times the message was delivered, this delivery included.
    pub(crate) delivered: i64,
    pub(crate) stream_sequence: u64,
    pub(crate) consumer_sequence: u64,
    /// When the stream stored the message, in nanoseconds since the Unix epoch.
    pub(crate) published_nanos: i64,
}

const PREFIX: &str = "$JS.ACK.";

/// Where a subject's facts are in it, so that they can be handed out again from the same subject.
#[derive(Clone, Copy)]
struct Located {
    stream: (usize, usize),
    consumer: (usize, usize),
    delivered: i64,
    stream_sequence: u64,
    consumer_sequence: u64,
    published_nanos: i64,
}

impl Located {
    fn of(facts: &AckSubject<'_>, reply: &str) -> Self {
        let range = |part: &str| {
            let start = part.as_ptr() as usize - reply.as_ptr() as usize;
            (start, start + part.len())
        };
        Located {
            stream: range(facts.stream),
            consumer: range(facts.consumer),
            delivered: facts.delivered,
            stream_sequence: facts.stream_sequence,
            consumer_sequence: facts.consumer_sequence,
            published_nanos: facts.published_nanos,
        }
    }

    fn in_subject(self, reply: &str) -> Option<AckSubject<'_>> {
        Some(AckSubject {
            stream: reply.get(self.stream.0..self.stream.1)?,
            consumer: reply.get(self.consumer.0..self.consumer.1)?,
            delivered: self.delivered,
            stream_sequence: self.stream_sequence,
            consumer_sequence: self.consumer_sequence,
            published_nanos: self.published_nanos,
        })
    }
}

thread_local! {
    /// The last acknowledgement subject this thread read, and what it said. A recorded span asks its message for
    /// its attributes, its age and its group one after the other, each reading the same subject: read once, the
    /// subject is compared after that, not parsed (measured: 4,578 of a JetStream consumer span's 18,170
    /// instructions were its three parses). Kept by content, never by address, so a new message whose subject
    /// happens to sit where the last one did is read anew.
    static LAST_READ: std::cell::RefCell<(String, Option<Located>)> = const { std::cell::RefCell::new((String::new(), None)) };
}

impl<'a> AckSubject<'a> {
    /// The facts of `reply`, when it is a JetStream acknowledgement subject.
    pub(crate) fn parse(reply: &'a str) -> Option<Self> {
        if !reply.starts_with(PREFIX) {
            return None;
        }
        let remembered = LAST_READ.try_with(|last| {
            let mut last = last.try_borrow_mut().ok()?;
            let (subject, located) = &mut *last;
            if subject.as_str() == reply {
                return Some(located.and_then(|located| located.in_subject(reply)));
            }
            let facts = Self::read(reply);
            subject.clear();
            subject.push_str(reply);
            *located = facts.as_ref().map(|facts| Located::of(facts, reply));
            Some(facts)
        });
        remembered.ok().flatten().unwrap_or_else(|| Self::read(reply))
    }

    /// The facts of `reply`, read from it.
    fn read(reply: &'a str) -> Option<Self> {
        let rest = reply.strip_prefix(PREFIX)?;
        let mut tokens = [""; 9];
        let mut count = 0;
        for token in rest.split('.') {
            if let Some(slot) = tokens.get_mut(count) {
                *slot = token;
            }
            count += 1;
        }
        // Seven tokens after the prefix: the first format. Nine or more: domain and account hash first.
        let fields = match count {
            7 => &tokens[..7],
            9.. => &tokens[2..9],
            _ => return None,
        };
        let [stream, consumer, delivered, stream_sequence, consumer_sequence, published, _pending] = fields else {
            return None;
        };
        if stream.is_empty() || consumer.is_empty() {
            return None;
        }
        Some(AckSubject {
            stream,
            consumer,
            delivered: delivered.parse().ok()?,
            stream_sequence: stream_sequence.parse().ok()?,
            consumer_sequence: consumer_sequence.parse().ok()?,
            published_nanos: published.parse().ok()?,
        })
    }

    /// When the stream stored the message, in milliseconds since the Unix epoch.
    pub(crate) fn published_millis(&self) -> i64 {
        self.published_nanos / 1_000_000
    }

    /// Whether the message was delivered before.
    pub(crate) fn redelivered(&self) -> bool {
        self.delivered > 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDERS: AckSubject<'static> = AckSubject {
        stream: "ORDERS",
        consumer: "inventory",
        delivered: 2,
        stream_sequence: 41,
        consumer_sequence: 57,
        published_nanos: 1_700_000_000_123_456_789,
    };

    #[test]
    fn both_formats_of_the_subject_are_read() {
        assert_eq!(AckSubject::parse("$JS.ACK.ORDERS.inventory.2.41.57.1700000000123456789.3"), Some(ORDERS));
        assert_eq!(AckSubject::parse("$JS.ACK._.ACCHASH.ORDERS.inventory.2.41.57.1700000000123456789.3"), Some(ORDERS));
        assert_eq!(
            AckSubject::parse("$JS.ACK.hub.ACCHASH.ORDERS.inventory.2.41.57.1700000000123456789.3.token.more"),
            Some(ORDERS),
            "tokens past the known ones are ignored"
        );
        assert_eq!(ORDERS.published_millis(), 1_700_000_000_123);
        assert!(ORDERS.redelivered());
    }

    #[test]
    fn a_subject_read_again_says_the_same_and_another_is_read_anew() {
        let first = "$JS.ACK.ORDERS.inventory.2.41.57.1700000000123456789.3".to_owned();
        assert_eq!(AckSubject::parse(&first), Some(ORDERS));
        let again = first.clone();
        assert_eq!(AckSubject::parse(&again), Some(ORDERS), "the remembered facts, on the second copy");
        let next = "$JS.ACK.ORDERS.inventory.1.42.58.1700000000123456789.2";
        assert_eq!(
            AckSubject::parse(next),
            Some(AckSubject { delivered: 1, stream_sequence: 42, consumer_sequence: 58, ..ORDERS })
        );
        assert_eq!(AckSubject::parse("$JS.ACK.ORDERS"), None);
        assert_eq!(AckSubject::parse("$JS.ACK.ORDERS"), None, "a subject that is none is remembered as none");
        assert_eq!(AckSubject::parse(&first), Some(ORDERS));
    }

    #[test]
    fn anything_else_reads_as_none() {
        for reply in [
            "",
            "_INBOX.abc.def",
            "$JS.ACK.",
            "$JS.ACK.ORDERS.inventory.2.41.57.1700000000123456789",
            "$JS.ACK.ORDERS.inventory.2.41.57.1700000000123456789.3.x",
            "$JS.ACK.ORDERS.inventory.two.41.57.1700000000123456789.3",
            "$JS.ACK.ORDERS.inventory.2.-41.57.1700000000123456789.3",
            "$JS.ACK..inventory.2.41.57.1700000000123456789.3",
            "$JS.ACK.ORDERS.inventory.2.41.57.99999999999999999999999.3",
        ] {
            assert_eq!(AckSubject::parse(reply), None, "{reply:?}");
        }
    }
}
