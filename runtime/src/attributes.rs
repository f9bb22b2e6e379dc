//! Span attributes: the semantic-convention ones a message contributes and the user's own.

use std::borrow::Cow;

use opentelemetry::{Key, KeyValue, StringValue, Value};

/// The attributes of one recorded span, collected before they are set on it in one call.
///
/// Brokers fill it in [`MessageFacts::record_attributes`](crate::MessageFacts::record_attributes); the
/// `attributes(...)` option of the macros fills it with the user's own through [`SpanAttributes::add`].
/// It exists only for spans that are sampled, so nothing here is computed for the others.
#[derive(Debug, Default)]
pub struct SpanAttributes {
    entries: Vec<KeyValue>,
}

impl SpanAttributes {
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self { entries: Vec::with_capacity(capacity) }
    }

    /// Adds one attribute. Values that have nothing to record ([`None`]) add nothing.
    ///
    /// ```
    /// let mut attributes = tracehop::SpanAttributes::default();
    /// attributes.add("app.order.id", 42_u64);
    /// attributes.add("app.coupon", None::<&str>);
    /// assert_eq!(attributes.len(), 1);
    /// ```
    pub fn add(&mut self, key: &'static str, value: impl AttributeValue) {
        if let Some(value) = value.into_attribute_value() {
            self.entries.push(KeyValue::new(Key::from_static_str(key), value));
        }
    }

    /// Adds a string attribute that lives as long as the program (a literal, a `static`), without copying it:
    /// [`SpanAttributes::add`] copies every `&str`, since it cannot tell how long one lives.
    ///
    /// ```
    /// let mut attributes = tracehop::SpanAttributes::default();
    /// attributes.add_static("app.region", "eu-west");
    /// assert_eq!(attributes.len(), 1);
    /// ```
    pub fn add_static(&mut self, key: &'static str, value: &'static str) {
        self.entries.push(KeyValue::new(Key::from_static_str(key), Value::String(StringValue::from(value))));
    }

    /// Adds a string attribute whose value recurs from message to message (a topic, a queue): the last few such
    /// values of this thread are kept as shared strings, so a repeat costs a reference count, not a copy.
    pub(crate) fn add_recurring(&mut self, key: &'static str, value: &str) {
        self.entries.push(KeyValue::new(Key::from_static_str(key), Value::String(recurring(value))));
    }

    /// Adds an attribute whose value is already an OpenTelemetry [`Value`].
    pub fn push(&mut self, key: &'static str, value: Value) {
        self.entries.push(KeyValue::new(Key::from_static_str(key), value));
    }

    /// Adds attributes whose keys are made at run time (captured headers' names).
    pub(crate) fn extend(&mut self, attributes: Vec<KeyValue>) {
        self.entries.extend(attributes);
    }

    /// How many attributes were added.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no attribute was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(crate) fn into_inner(self) -> Vec<KeyValue> {
        self.entries
    }
}

/// `value` as a shared string, kept by this thread while it recurs (see the span's `names`).
pub(crate) use crate::span::recurring;

/// A value the `attributes(key = expr)` option of the macros, or [`SpanAttributes::add`], can record.
///
/// Implemented for the integers (unsigned ones above `i64::MAX` are recorded as strings, so no value is
/// changed), floats, `bool`, strings, OpenTelemetry's [`Value`], [`Option`] of any of these (`None` records
/// nothing) and references to any of these.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be recorded as a span attribute",
    note = "record an integer, float, bool or string expression, or an `Option` of one; for a type that implements `Display`, write `key = value.to_string()`"
)]
pub trait AttributeValue {
    /// The OpenTelemetry value, or `None` when there is nothing to record.
    fn into_attribute_value(self) -> Option<Value>;
}

macro_rules! signed_attribute_values {
    ($($int:ty),*) => {$(
        impl AttributeValue for $int {
            fn into_attribute_value(self) -> Option<Value> {
                Some(Value::I64(i64::from(self)))
            }
        }
    )*};
}
signed_attribute_values!(i8, i16, i32, i64, u8, u16, u32);

macro_rules! wide_attribute_values {
    ($($int:ty),*) => {$(
        impl AttributeValue for $int {
            fn into_attribute_value(self) -> Option<Value> {
                Some(match i64::try_from(self) {
                    Ok(value) => Value::I64(value),
                    Err(_) => Value::String(self.to_string().into()),
                })
            }
        }
    )*};
}
wide_attribute_values!(u64, usize, isize, i128, u128);

impl AttributeValue for f64 {
    fn into_attribute_value(self) -> Option<Value> {
        Some(Value::F64(self))
    }
}

impl AttributeValue for f32 {
    fn into_attribute_value(self) -> Option<Value> {
        Some(Value::F64(f64::from(self)))
    }
}

impl AttributeValue for bool {
    fn into_attribute_value(self) -> Option<Value> {
        Some(Value::Bool(self))
    }
}

impl AttributeValue for &str {
    fn into_attribute_value(self) -> Option<Value> {
        Some(Value::String(StringValue::from(self.to_owned())))
    }
}

impl AttributeValue for String {
    fn into_attribute_value(self) -> Option<Value> {
        Some(Value::String(StringValue::from(self)))
    }
}

impl AttributeValue for Cow<'static, str> {
    fn into_attribute_value(self) -> Option<Value> {
        Some(Value::String(StringValue::from(self)))
    }
}

impl AttributeValue for Value {
    fn into_attribute_value(self) -> Option<Value> {
        Some(self)
    }
}

impl<T: AttributeValue> AttributeValue for Option<T> {
    fn into_attribute_value(self) -> Option<Value> {
        self.and_then(AttributeValue::into_attribute_value)
    }
}

macro_rules! copied_attribute_values {
    ($($value:ty),*) => {$(
        impl AttributeValue for &$value {
            fn into_attribute_value(self) -> Option<Value> {
                (*self).into_attribute_value()
            }
        }
    )*};
}
copied_attribute_values!(i8, i16, i32, i64, u8, u16, u32, u64, usize, isize, i128, u128, f32, f64, bool);

impl AttributeValue for &String {
    fn into_attribute_value(self) -> Option<Value> {
        self.as_str().into_attribute_value()
    }
}

impl AttributeValue for &Cow<'static, str> {
    fn into_attribute_value(self) -> Option<Value> {
        self.clone().into_attribute_value()
    }
}

impl AttributeValue for &Value {
    fn into_attribute_value(self) -> Option<Value> {
        Some(self.clone())
    }
}

impl<'a, T> AttributeValue for &'a Option<T>
where
    &'a T: AttributeValue,
{
    fn into_attribute_value(self) -> Option<Value> {
        self.as_ref().and_then(AttributeValue::into_attribute_value)
    }
}

/// A reference to a reference records what the inner reference records (`&&str`, `&&String`, ...).
impl<'a, T: ?Sized> AttributeValue for &&'a T
where
    &'a T: AttributeValue,
{
    fn into_attribute_value(self) -> Option<Value> {
        (*self).into_attribute_value()
    }
}

/// A value a `destination = expr` or `routing_key = expr` option can name a destination or routing key with: a
/// string or a reference to one.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot name a destination or routing key",
    label = "expected a string",
    note = "`destination = ...` and `routing_key = ...` take a string literal or an expression of type `&str`, `String` or `Cow<str>`"
)]
pub trait DestinationName {
    /// The destination's name.
    fn destination_name(&self) -> &str;
}

impl DestinationName for str {
    fn destination_name(&self) -> &str {
        self
    }
}

impl DestinationName for String {
    fn destination_name(&self) -> &str {
        self
    }
}

impl DestinationName for Cow<'_, str> {
    fn destination_name(&self) -> &str {
        self
    }
}

impl<T: DestinationName + ?Sized> DestinationName for &T {
    fn destination_name(&self) -> &str {
        (**self).destination_name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value_of(value: impl AttributeValue) -> Option<Value> {
        value.into_attribute_value()
    }

    #[test]
    #[allow(clippy::needless_borrows_for_generic_args)] // the impl for references is under test
    fn integers_keep_their_value() {
        assert_eq!(value_of(7_u8), Some(Value::I64(7)));
        assert_eq!(value_of(-7_i32), Some(Value::I64(-7)));
        assert_eq!(value_of(u64::MAX), Some(Value::String(u64::MAX.to_string().into())));
        assert_eq!(value_of(&42_u64), Some(Value::I64(42)));
    }

    #[test]
    #[allow(clippy::needless_borrows_for_generic_args)] // the impls for references are under test
    fn floats_strings_and_values_keep_their_value() {
        assert_eq!(value_of(1.5_f64), Some(Value::F64(1.5)));
        assert_eq!(value_of(1.5_f32), Some(Value::F64(1.5)));
        assert_eq!(value_of(&2.5_f64), Some(Value::F64(2.5)));
        assert_eq!(value_of(String::from("a")), Some(Value::String("a".into())));
        assert_eq!(value_of(Cow::Borrowed("b")), Some(Value::String("b".into())));
        assert_eq!(value_of(&Cow::Borrowed("c")), Some(Value::String("c".into())));
        assert_eq!(value_of(Value::I64(3)), Some(Value::I64(3)));
        assert_eq!(value_of(&Value::Bool(false)), Some(Value::Bool(false)));
        assert_eq!(value_of(&Some(4_u8)), Some(Value::I64(4)));
        assert_eq!(value_of(&None::<u8>), None);
        assert_eq!(value_of(&&"d"), Some(Value::String("d".into())));
        assert_eq!(value_of(&&String::from("e")), Some(Value::String("e".into())));
    }

    #[test]
    fn attributes_are_collected_in_order_and_counted() {
        let mut attributes = SpanAttributes::with_capacity(16);
        assert!(attributes.is_empty());
        assert_eq!(attributes.len(), 0);
        attributes.add("a", 1_u8);
        attributes.push("b", Value::Bool(true));
        attributes.add("c", None::<u8>);
        assert!(!attributes.is_empty());
        assert_eq!(attributes.len(), 2);
        let entries = attributes.into_inner();
        assert!(entries.capacity() >= 16, "room for a span's attributes from the start");
        assert_eq!(entries, vec![KeyValue::new("a", 1_i64), KeyValue::new("b", true)]);
    }

    #[test]
    fn destinations_are_named_by_any_string() {
        fn name_of<T: DestinationName + ?Sized>(destination: &T) -> &str {
            destination.destination_name()
        }
        assert_eq!(name_of("orders"), "orders");
        assert_eq!(name_of(&String::from("payments")), "payments");
        assert_eq!(name_of(&Cow::Borrowed("shipping")), "shipping");
        assert_eq!(name_of(&&"audit"), "audit");
    }

    #[test]
    fn strings_options_and_references() {
        let id = String::from("ord-1");
        assert_eq!(value_of(&id), Some(Value::String("ord-1".into())));
        assert_eq!(value_of(id.as_str()), Some(Value::String("ord-1".into())));
        assert_eq!(value_of(None::<String>), None);
        assert_eq!(value_of(Some(true)), Some(Value::Bool(true)));
    }
}
