//! Nothing: this package only holds the UI cases under `tests/`.
