// SPDX-License-Identifier: Apache-2.0
//! tee-emu: emulators of the Linux kernel's confidential-computing guest
//! interfaces, for cvm-attest's tests on machines without TEE hardware.
//!
//! * [`TsmEmulator`], configfs-tsm (Documentation/ABI/testing/configfs-tsm-report)
//!   over FUSE, with the `sev_guest` and `tdx_guest` providers.
//! * [`SevGuestEmulator`], `/dev/sev-guest` (include/uapi/linux/sev-guest.h)
//!   over FUSE, answering `SNP_GET_REPORT` and `SNP_GET_EXT_REPORT`.
//! * [`snp`] and [`tdx`], the evidence both produce — SNP v3 reports signed by
//!   the test VCEK of `tests/data/snp-test-pki`, TDX v4 quotes re-signed by a
//!   test attestation key — usable directly by verifiers' tests.
//! * [`swtpm`], a software TPM per test (swtpm + tpm2-tools), and
//!   [`paravisor`], Azure's paravisor refreshing the HCL report ([`hcl`]) in
//!   vTPM NV when the guest writes its report data; [`TpmDevice`], a FUSE
//!   `/dev/tpmrm0` in front of either, for tpm2-tss's device TCTI; [`imds`], a fake Azure
//!   IMDS (THIM certificates, TD quotes). [`quote`] and [`ak`] give TPM quotes
//!   and AK encodings, also from a software AK.
//!
//! The emulators mount with `mount(2)` and so need root and `/dev/fuse`
//! ([`can_run`] tells tests when to skip). Dropping one unmounts it.

pub mod ak;
pub mod hcl;
pub mod imds;
mod mount;
pub mod paravisor;
pub mod quote;
mod remote;
pub mod scratch;
mod sev_guest;
mod sev_ioctl;
pub mod snp;
pub mod swtpm;
pub mod systemd1;
pub mod tdx;
mod tpm_cmd;
mod tpm_dev;
mod tsm;
mod tsm_fs;

pub use mount::{can_run, fuse_usable, FuseMount};
pub use sev_guest::{
    SevGuestEmulator, SevGuestFaults, SevGuestKnobs, SEV_RET_AEAD_OFLOW, SEV_RET_INVALID_PARAM,
    SEV_RET_RESOURCE_LIMIT, SNP_GET_EXT_REPORT, SNP_GET_REPORT, VMM_ERR_BUSY, VMM_ERR_INVALID_LEN,
};
pub use tsm::{Provider, TsmFaults, TsmKnobs, INBLOB_MAX};
pub use tsm_fs::TsmEmulator;

pub use ak::AkInfo;
pub use hcl::HclKind;
pub use imds::FakeImds;
pub use paravisor::Paravisor;
pub use quote::{SoftAk, TpmQuote};
pub use swtpm::Swtpm;
pub use tpm_dev::TpmDevice;
