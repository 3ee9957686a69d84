// SPDX-License-Identifier: Apache-2.0
//! Integration tests: the real binary against the in-process reference KBS.
//! Everything runs on loopback inside the test's own temporary directory.

mod util;

mod boot;
mod cli;
mod decode;
mod faults;
mod get;
mod leaks;
mod packaging;
mod probe;
mod run;
mod tee;
mod tls;
mod units;
mod vtpm;
mod wire;
