//! Provisioning a running guest over SSH. Everything done to a guest is a [`steps::Plan`] of
//! idempotent steps (a check, a command, an optional skip condition) rendered from `templates/`
//! by pure functions; one [`runner`] uploads files, runs the plan as root and reports each step.
//! `bootstrap`, `collector` and `collector_image` only build plans and the files they install.

pub mod bootstrap;
pub mod collector;
pub mod collector_image;
pub mod collector_mode;
pub mod command;
pub mod runner;
pub mod steps;
pub mod systemd;
