//! Recurring destinations: the few a thread's messages go to or come from, kept so that a recorded span neither
//! copies its destination nor formats its name again. Each thread keeps its last [`RECENT_DESTINATIONS`], each as
//! a shared string (the `messaging.destination.name` value) beside the span name last made from it
//! (`process orders`). The names themselves are interned once for the whole process, in a table of at most
//! [`NAMES_PER_PROCESS`]: a name there lives as long as the program and reaches the SDK borrowed, so it is neither
//! allocated nor freed per span. Past the cap a name is formatted per span, as an owned string, so no name is lost
//! and the memory the table holds stays bounded.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};

use opentelemetry::StringValue;

use crate::brokers::MessagingSystem;

/// How many span names the process interns. A handler names its spans by its configured destination, or by the
/// destination of its messages (a topic, a queue, a subject with its reply inbox cut off), so the names of a
/// process are few; the cap bounds what the rare process that names spans by an unbounded set of destinations
/// keeps (each name a few dozen bytes).
const NAMES_PER_PROCESS: usize = 1024;

/// How many destinations each thread keeps: a handler's destinations are few, and a miss costs only the copy and
/// the look-up in the process's table the cache saves.
const RECENT_DESTINATIONS: usize = 8;

/// The span names of the whole process, each made once and never freed, up to a cap.
struct NameTable {
    names: Mutex<BTreeSet<&'static str>>,
    capacity: usize,
}

/// The process's span names.
static NAMES: NameTable = NameTable::new(NAMES_PER_PROCESS);

impl NameTable {
    const fn new(capacity: usize) -> Self {
        NameTable { names: Mutex::new(BTreeSet::new()), capacity }
    }

    /// `name` borrowed from the table: the one interned before, or `name` itself, interned now while the table
    /// has room. Past the cap, `name` as it is, owned.
    #[cold]
    fn intern(&self, name: String) -> Cow<'static, str> {
        // Nothing panics while the lock is held, and a set of leaked strings is whole whatever happened.
        let mut names = self.names.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(&interned) = names.get(name.as_str()) {
            return Cow::Borrowed(interned);
        }
        if names.len() >= self.capacity {
            return Cow::Owned(name);
        }
        let interned: &'static str = Box::leak(name.into_boxed_str());
        names.insert(interned);
        Cow::Borrowed(interned)
    }
}

/// A destination a thread has seen lately.
struct Recent {
    destination: Arc<str>,
    /// The span name last made from it, when one was.
    name: Option<RecentName>,
}

/// A span name made from a recent destination, and what it was made for.
#[derive(Clone, Copy)]
struct RecentName {
    operation: &'static str,
    system: Option<MessagingSystem>,
    /// `None` past the table's cap: the name is then formatted for each span.
    interned: Option<&'static str>,
}

impl RecentName {
    #[inline]
    fn is_for(&self, operation: &'static str, system: Option<MessagingSystem>) -> bool {
        // The same operation is nearly always the same static string, so its address decides without a compare.
        (std::ptr::eq(self.operation, operation) || self.operation == operation) && self.system == system
    }
}

thread_local! {
    /// Most recent first.
    static RECENT: RefCell<[Option<Recent>; RECENT_DESTINATIONS]> =
        const { RefCell::new([const { None }; RECENT_DESTINATIONS]) };
}

/// `destination` as a shared string: the one this thread kept when it recurs, otherwise a new one that replaces
/// the least recently used.
pub(crate) fn recurring(destination: &str) -> StringValue {
    // The common case first, with nothing moved: the thread's last destination again.
    let last = RECENT.with_borrow(|recent| {
        let kept = recent[0].as_ref().filter(|kept| *kept.destination == *destination)?;
        Some(StringValue::from(Arc::clone(&kept.destination)))
    });
    if let Some(value) = last {
        return value;
    }
    RECENT.with_borrow_mut(|recent| {
        let at = recent.iter().position(|kept| kept.as_ref().is_some_and(|kept| *kept.destination == *destination));
        let kept = match at.and_then(|at| recent[at].take()) {
            Some(kept) => kept,
            None => Recent { destination: Arc::from(destination), name: None },
        };
        let value = StringValue::from(Arc::clone(&kept.destination));
        keep_first(recent, at, kept);
        value
    })
}

/// The name of a span of `operation` on `destination` (`process orders`, `ack amq.default`; the destination
/// written as `system` writes it in span names), and `destination` as a shared string, both from one look-up:
/// the name borrowed from the process's table unless past its cap.
#[inline]
pub(crate) fn named(
    operation: &'static str,
    system: Option<MessagingSystem>,
    destination: &str,
) -> (StringValue, Cow<'static, str>) {
    // The common case first, with nothing moved: the thread's last span was named the same.
    let last = RECENT.with_borrow(|recent| {
        let kept = recent[0].as_ref()?;
        let name = kept.name.filter(|name| name.is_for(operation, system))?;
        let interned = name.interned.filter(|_| *kept.destination == *destination)?;
        Some((StringValue::from(Arc::clone(&kept.destination)), Cow::Borrowed(interned)))
    });
    last.unwrap_or_else(|| named_in(&NAMES, operation, system, destination))
}

/// [`named`] with the names interned in `table`, however recent the destination.
#[inline(never)]
fn named_in(
    table: &NameTable,
    operation: &'static str,
    system: Option<MessagingSystem>,
    destination: &str,
) -> (StringValue, Cow<'static, str>) {
    RECENT.with_borrow_mut(|recent| {
        let at = recent.iter().position(|kept| {
            kept.as_ref().is_some_and(|kept| {
                *kept.destination == *destination && kept.name.is_none_or(|name| name.is_for(operation, system))
            })
        });
        let mut kept = match at.and_then(|at| recent[at].take()) {
            Some(kept) => kept,
            None => {
                // A span of another operation named for the same destination shares its string.
                let shared =
                    recent.iter().find_map(|kept| kept.as_ref().filter(|kept| *kept.destination == *destination));
                let destination = shared.map_or_else(|| Arc::from(destination), |kept| Arc::clone(&kept.destination));
                Recent { destination, name: None }
            }
        };
        let mut formatted = None;
        let recent_name = *kept.name.get_or_insert_with(|| {
            let interned = match table.intern(format(operation, system, destination)) {
                Cow::Borrowed(interned) => Some(interned),
                Cow::Owned(name) => {
                    formatted = Some(name);
                    None
                }
            };
            RecentName { operation, system, interned }
        });
        let name = match (recent_name.interned, formatted) {
            (Some(interned), _) => Cow::Borrowed(interned),
            (None, Some(name)) => Cow::Owned(name),
            (None, None) => Cow::Owned(format(operation, system, destination)),
        };
        let value = StringValue::from(Arc::clone(&kept.destination));
        keep_first(recent, at, kept);
        (value, name)
    })
}

/// Puts `kept`, taken from `at` (or new), first: most recent first, so the oldest is the one replaced.
#[inline]
fn keep_first(recent: &mut [Option<Recent>; RECENT_DESTINATIONS], at: Option<usize>, kept: Recent) {
    recent[..=at.unwrap_or(RECENT_DESTINATIONS - 1)].rotate_right(1);
    recent[0] = Some(kept);
}

/// `{operation} {destination}`, the destination as `system` writes it in span names.
fn format(operation: &str, system: Option<MessagingSystem>, destination: &str) -> String {
    let destination = system.map_or(destination, |system| system.span_name_destination(destination));
    // Sized once: `format!` costs several times as much.
    let mut name = String::with_capacity(operation.len() + 1 + destination.len());
    name.push_str(operation);
    name.push(' ');
    name.push_str(destination);
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    fn borrowed(name: Cow<'static, str>) -> &'static str {
        match name {
            Cow::Borrowed(name) => name,
            Cow::Owned(name) => panic!("`{name}` was not interned"),
        }
    }

    #[test]
    fn a_recurring_destination_names_its_spans_exactly() {
        let (destination, name) = named("process", Some(MessagingSystem::Kafka), "orders");
        assert_eq!((destination.as_str(), &*name), ("orders", "process orders"));
        let (destination, name) = named("process", Some(MessagingSystem::Kafka), "orders");
        assert_eq!((destination.as_str(), &*name), ("orders", "process orders"));
        let (destination, name) = named("send", Some(MessagingSystem::Kafka), "orders");
        assert_eq!((destination.as_str(), &*name), ("orders", "send orders"), "another operation, another name");
        let (_, name) = named("process", None, "orders");
        assert_eq!(name, "process orders", "no broker: the destination as it is");
    }

    #[test]
    fn a_repeated_name_is_the_same_string_not_a_copy() {
        let (first_destination, first) = named("process", Some(MessagingSystem::Kafka), "repeated-orders");
        let (again_destination, again) = named("process", Some(MessagingSystem::Kafka), "repeated-orders");
        assert!(std::ptr::eq(borrowed(first.clone()), borrowed(again.clone())));
        assert!(std::ptr::eq(first_destination.as_str(), again_destination.as_str()), "the destination is shared");
        // Pushed out of this thread's recent destinations, it is found again in the process's table.
        for other in 0..2 * RECENT_DESTINATIONS {
            named("process", Some(MessagingSystem::Kafka), &format!("other-{other}"));
        }
        let (_, later) = named("process", Some(MessagingSystem::Kafka), "repeated-orders");
        assert!(std::ptr::eq(borrowed(first.clone()), borrowed(later.clone())));
    }

    #[test]
    fn operations_on_one_destination_share_its_string_and_keep_their_own_names() {
        let (processed, process) = named("process", Some(MessagingSystem::RabbitMq), "shared-queue");
        let (acked, ack) = named("ack", Some(MessagingSystem::RabbitMq), "shared-queue");
        assert!(std::ptr::eq(processed.as_str(), acked.as_str()));
        let (_, process_again) = named("process", Some(MessagingSystem::RabbitMq), "shared-queue");
        let (_, ack_again) = named("ack", Some(MessagingSystem::RabbitMq), "shared-queue");
        assert_eq!((&*process_again, &*ack_again), ("process shared-queue", "ack shared-queue"));
        assert!(std::ptr::eq(borrowed(process.clone()), borrowed(process_again.clone())));
        assert!(std::ptr::eq(borrowed(ack.clone()), borrowed(ack_again.clone())));
    }

    #[test]
    fn a_destination_recorded_before_it_names_a_span_keeps_its_string() {
        let recorded = recurring("recorded-first");
        let (destination, name) = named("process", Some(MessagingSystem::Kafka), "recorded-first");
        assert!(std::ptr::eq(recorded.as_str(), destination.as_str()));
        assert_eq!(name, "process recorded-first");
        assert!(std::ptr::eq(recurring("recorded-first").as_str(), destination.as_str()));
    }

    #[test]
    fn a_destination_with_any_characters_is_named_exactly() {
        let odd = "ordres été \"v2\"\t#1 ☃";
        let (destination, name) = named("process", Some(MessagingSystem::Kafka), odd);
        assert_eq!((destination.as_str(), &*name), (odd, "process ordres été \"v2\"\t#1 ☃"));
        let (destination, name) = named("ack", Some(MessagingSystem::RabbitMq), "");
        assert_eq!((destination.as_str(), &*name), ("", "ack amq.default"), "RabbitMQ's default exchange");
        let (destination, name) = named("process", Some(MessagingSystem::Kafka), "");
        assert_eq!((destination.as_str(), &*name), ("", "process "), "Kafka writes an empty name as it is");
        let (destination, name) = named("receive", Some(MessagingSystem::Nats), "_INBOX.abc.def");
        assert_eq!((destination.as_str(), &*name), ("_INBOX.abc.def", "receive _INBOX"), "the reply inbox cut off");
        let (_, other_inbox) = named("receive", Some(MessagingSystem::Nats), "_INBOX.ghi.jkl");
        assert!(
            std::ptr::eq(borrowed(name.clone()), borrowed(other_inbox.clone())),
            "every reply inbox has the one name"
        );
    }

    #[test]
    fn threads_share_the_names() {
        let here = borrowed(named("process", Some(MessagingSystem::Kafka), "across-threads").1);
        let there = std::thread::spawn(|| borrowed(named("process", Some(MessagingSystem::Kafka), "across-threads").1))
            .join()
            .expect("the other thread names its span");
        assert!(std::ptr::eq(here, there));
    }

    #[test]
    fn past_the_cap_names_are_made_per_span_and_still_exact() {
        static SMALL: NameTable = NameTable::new(2);
        // A thread of its own, so that no destination of another test is recent here.
        std::thread::spawn(|| {
            fn name_of(destination: &str) -> (StringValue, Cow<'static, str>) {
                named_in(&SMALL, "process", Some(MessagingSystem::Kafka), destination)
            }
            let first = borrowed(name_of("first").1);
            let second = borrowed(name_of("second").1);
            assert_eq!((first, second), ("process first", "process second"));
            let (destination, third) = name_of("third");
            assert_eq!((destination.as_str(), &third), ("third", &Cow::<str>::Owned("process third".to_owned())));
            let (_, third_again) = name_of("third");
            assert_eq!(third_again, Cow::<str>::Owned("process third".to_owned()), "still exact when it recurs");
            assert!(std::ptr::eq(borrowed(name_of("first").1), first), "the interned ones stay");
            let full = SMALL.names.lock().unwrap_or_else(PoisonError::into_inner).clone();
            assert_eq!(full, BTreeSet::from(["process first", "process second"]));
            // Pushed out of this thread's recent destinations, a name past the cap is still exact.
            for other in 0..2 * RECENT_DESTINATIONS {
                name_of(&format!("other-{other}"));
            }
            assert_eq!(name_of("third").1, Cow::<str>::Owned("process third".to_owned()));
            assert!(std::ptr::eq(borrowed(name_of("second").1), second));
        })
        .join()
        .expect("the names are checked");
    }

    #[test]
    fn a_thread_keeps_its_most_recent_destinations() {
        std::thread::spawn(|| {
            let kept = || {
                RECENT.with_borrow(|recent| {
                    recent.iter().flatten().map(|kept| kept.destination.to_string()).collect::<Vec<_>>()
                })
            };
            for destination in ["a", "b", "c"] {
                recurring(destination);
            }
            named("process", None, "a");
            assert_eq!(kept(), ["a", "c", "b"], "most recent first");
            for other in 0..RECENT_DESTINATIONS {
                recurring(&other.to_string());
            }
            assert_eq!(kept(), ["7", "6", "5", "4", "3", "2", "1", "0"], "the oldest replaced");
        })
        .join()
        .expect("the destinations are checked");
    }
}
