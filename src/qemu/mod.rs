//! QEMU: the command line (pure), firmware search, accelerator choice and self-test.

pub mod accel;
pub mod argv;
pub mod firmware;
