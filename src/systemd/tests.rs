// SPDX-License-Identifier: Apache-2.0
//! The notifier against a datagram socket in a scratch directory. (Unit
//! actions are the units helper's: `manager_tests.rs`.)

use std::ffi::OsString;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;
use std::time::Duration;

use tee_emu::scratch::Scratch;

use super::Notifier;

fn receiver(path: &Path) -> UnixDatagram {
    let socket = UnixDatagram::bind(path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    socket
}

fn recv(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = socket.recv(&mut buf).expect("a notify datagram");
    String::from_utf8(buf[..n].to_vec()).unwrap()
}

#[test]
fn notifier_sends_status_extend_and_ready() {
    let dir = Scratch::new("notify");
    let path = dir.path().join("notify");
    let socket = receiver(&path);
    let notifier = Notifier::new(Some(path.into_os_string()));
    assert!(notifier.active());
    notifier.status("Waiting for the KBS\n(attempt 3)\r");
    notifier.extend_timeout(Duration::from_secs(90));
    notifier.extend_timeout(Duration::from_micros(1500));
    notifier.ready();
    assert_eq!(recv(&socket), "STATUS=Waiting for the KBS (attempt 3) ");
    assert_eq!(recv(&socket), "EXTEND_TIMEOUT_USEC=90000000");
    assert_eq!(recv(&socket), "EXTEND_TIMEOUT_USEC=1500");
    assert_eq!(recv(&socket), "READY=1");
}

#[test]
fn notifier_reaches_an_abstract_socket() {
    let name = format!("cvm-attest-test-notify-{}", std::process::id());
    let socket =
        UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let notifier = Notifier::new(Some(OsString::from(format!("@{name}"))));
    notifier.ready();
    assert_eq!(recv(&socket), "READY=1");
}

#[test]
fn notifier_is_silent_without_a_socket() {
    for socket in [None, Some(OsString::new())] {
        let notifier = Notifier::new(socket);
        assert!(!notifier.active());
        notifier.status("nobody listens");
        notifier.extend_timeout(Duration::from_secs(1));
        notifier.ready();
    }
}

#[test]
fn notifier_survives_a_missing_or_bad_socket() {
    let dir = Scratch::new("notify-missing");
    // Nobody bound it: every send fails and is ignored (no panic, no error).
    let notifier = Notifier::new(Some(dir.path().join("absent").into_os_string()));
    assert!(notifier.active());
    notifier.status("lost");
    notifier.ready();
    // Neither a path nor an abstract name: inactive.
    let notifier = Notifier::new(Some(OsString::from("relative/notify")));
    assert!(!notifier.active());
    notifier.ready();
}
