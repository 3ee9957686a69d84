// SPDX-License-Identifier: Apache-2.0
//! The agent's side of systemd: progress and readiness for the unit that runs
//! it (`sd_notify` datagrams, [`Notifier`]), and reloading or restarting the
//! units that consume freshly delivered secrets (the manager's D-Bus API,
//! through the units helper: [`act_on_units`]). The units themselves are in
//! `systemd/` at the top of the repository.

pub mod action;
mod notify;
#[cfg(test)]
mod tests;
mod units;

pub use notify::Notifier;
pub use units::act_on_units;
