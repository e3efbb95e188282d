//! Exit statuses, the same for every command (README, "Exit statuses"). Reports that carry an
//! exit status (validate, collector status, image verify, doctor) use these names.

/// Success; for validate, every comparable check passed.
pub const OK: i32 = 0;
/// Any error (the message says what and where); for validate, a check failed.
pub const ERROR: i32 = 1;
/// Usage error (unknown flag, bad value), from clap.
pub const USAGE: i32 = 2;
/// `collector status`: not active. `validate`: nothing was comparable.
pub const NOT_READY: i32 = 3;
