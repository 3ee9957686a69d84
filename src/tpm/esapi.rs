// SPDX-License-Identifier: Apache-2.0
//! The TPM, through tss-esapi over the system tpm2-tss (TCG TSS 2.0 ESAPI).
//! Compiled into the TPM helper only (`src/bin/cvm-attest-tpm.rs`).
//!
//! One context per helper, on the TPM device the agent names (a device
//! TCTI, checked by the agent). Every transient object this code loads is
//! flushed when its guard drops. What it offers: quotes over the SHA-256
//! PCRs 0-23 (read back and checked against the quote's digest, retried if
//! a PCR moved in between), the AK's public key, and NV reads and writes
//! with owner authorization (the Azure vTPM interface, kbs-protocol §3.4).

use std::str::FromStr;

use anyhow::{anyhow, bail, Context as _, Result};
use ring::digest::{digest, SHA256};
use tss_esapi::abstraction::{ak, ek, nv, pcr};
use tss_esapi::attributes::NvIndexAttributesBuilder;
use tss_esapi::handles::{
    KeyHandle, NvIndexTpmHandle, ObjectHandle, PersistentTpmHandle, TpmHandle,
};
use tss_esapi::interface_types::algorithm::{
    AsymmetricAlgorithm, HashingAlgorithm, SignatureSchemeAlgorithm,
};
use tss_esapi::interface_types::resource_handles::{NvAuth, Provision};
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::{
    AttestInfo, Data, HashScheme, MaxNvBuffer, NvPublicBuilder, PcrSelectionListBuilder, PcrSlot,
    Public, Signature, SignatureScheme,
};
use tss_esapi::tcti_ldr::{DeviceConfig, TctiNameConf};
use tss_esapi::traits::Marshall;
use tss_esapi::Context;

use crate::wire::{AkSource, Quote};

/// Quote attempts when a PCR changes between the quote and the read-back.
const QUOTE_TRIES: u32 = 3;

const SLOTS: [PcrSlot; 24] = [
    PcrSlot::Slot0,
    PcrSlot::Slot1,
    PcrSlot::Slot2,
    PcrSlot::Slot3,
    PcrSlot::Slot4,
    PcrSlot::Slot5,
    PcrSlot::Slot6,
    PcrSlot::Slot7,
    PcrSlot::Slot8,
    PcrSlot::Slot9,
    PcrSlot::Slot10,
    PcrSlot::Slot11,
    PcrSlot::Slot12,
    PcrSlot::Slot13,
    PcrSlot::Slot14,
    PcrSlot::Slot15,
    PcrSlot::Slot16,
    PcrSlot::Slot17,
    PcrSlot::Slot18,
    PcrSlot::Slot19,
    PcrSlot::Slot20,
    PcrSlot::Slot21,
    PcrSlot::Slot22,
    PcrSlot::Slot23,
];

pub struct Tpm {
    ctx: Context,
    tcti: String,
}

/// A loaded object flushed on drop (persistent handles are only closed).
struct Loaded<'a> {
    tpm: &'a mut Tpm,
    handle: KeyHandle,
    transient: bool,
}

impl Drop for Loaded<'_> {
    fn drop(&mut self) {
        let object = ObjectHandle::from(self.handle);
        let result = if self.transient {
            self.tpm.ctx.flush_context(object)
        } else {
            let mut object = object;
            self.tpm.ctx.tr_close(&mut object)
        };
        if let Err(e) = result {
            log::warn!("release a TPM object on {}: {e}", self.tpm.tcti);
        }
    }
}

impl Tpm {
    /// Opens a context on `tcti`, a device TCTI (`device:/dev/tpmrm0`).
    pub fn open(tcti: &str) -> Result<Tpm> {
        let path = tcti
            .strip_prefix("device:")
            .with_context(|| format!("TCTI '{tcti}' is not a device TCTI"))?;
        // The C library logs its own errors to stderr; we report ours once.
        if std::env::var_os("TSS2_LOG").is_none() {
            std::env::set_var("TSS2_LOG", "all+none");
        }
        let conf = TctiNameConf::Device(
            DeviceConfig::from_str(path).with_context(|| format!("TCTI '{tcti}'"))?,
        );
        let ctx =
            Context::new(conf).with_context(|| format!("open the TPM through TCTI '{tcti}'"))?;
        Ok(Tpm {
            ctx,
            tcti: tcti.to_owned(),
        })
    }

    fn load_ak(&mut self, source: AkSource) -> Result<Loaded<'_>> {
        let (handle, may_create) = match source {
            AkSource::Persistent(h) => (h, false),
            AkSource::PersistentOrCreate(h) => (h, true),
        };
        let persistent = PersistentTpmHandle::new(handle).map_err(|_| {
            anyhow!("{handle:#x} is not a persistent handle (0x81000000-0x81ffffff)")
        })?;
        match self
            .ctx
            .tr_from_tpm_public(TpmHandle::Persistent(persistent))
        {
            Ok(object) => {
                return Ok(Loaded {
                    handle: object.into(),
                    tpm: self,
                    transient: false,
                })
            }
            Err(e) if !may_create => bail!(
                "no attestation key at persistent handle {handle:#010x} on {} ({e})",
                self.tcti
            ),
            Err(_) => log::warn!(
                "no AK at {handle:#010x}: creating one under the endorsement key; it lasts \
                 for this run only, so a KBS policy that checks trusted_aks cannot know it: \
                 persist an AK at {handle:#010x} (tpm2_createak, tpm2_evictcontrol) or name \
                 one with --ak-handle"
            ),
        }
        let ek = ek::create_ek_object(&mut self.ctx, AsymmetricAlgorithm::Rsa, None)
            .context("create the endorsement key")?;
        let created = ak::create_ak(
            &mut self.ctx,
            ek,
            HashingAlgorithm::Sha256,
            SignatureSchemeAlgorithm::RsaSsa,
            None,
            None,
        )
        .and_then(|k| ak::load_ak(&mut self.ctx, ek, None, k.out_private, k.out_public));
        if let Err(e) = self.ctx.flush_context(ek.into()) {
            log::warn!("flush the endorsement key: {e}");
        }
        let handle = created.context("create and load an attestation key under the EK")?;
        Ok(Loaded {
            handle,
            tpm: self,
            transient: true,
        })
    }

    /// Quotes PCRs 0-23 (SHA-256) with `qualifying` as extraData.
    pub fn quote(&mut self, source: AkSource, qualifying: &[u8], rsassa: bool) -> Result<Quote> {
        let scheme = if rsassa {
            SignatureScheme::RsaSsa {
                hash_scheme: HashScheme::new(HashingAlgorithm::Sha256),
            }
        } else {
            SignatureScheme::Null
        };
        let selection = PcrSelectionListBuilder::new()
            .with_selection(HashingAlgorithm::Sha256, &SLOTS)
            .build()?;
        let data = Data::try_from(qualifying.to_vec())
            .context("qualifying data too long for TPM2_Quote")?;
        let ak = self.load_ak(source)?;
        let handle = ak.handle;
        let (public, _, _) = ak
            .tpm
            .ctx
            .read_public(handle)
            .context("read the AK's public area")?;
        let (ak_modulus, ak_exponent) = rsa_parts(&public)?;
        for attempt in 1..=QUOTE_TRIES {
            ak.tpm
                .ctx
                .set_sessions((Some(AuthSession::Password), None, None));
            let quoted = ak
                .tpm
                .ctx
                .quote(handle, data.clone(), scheme, selection.clone());
            ak.tpm.ctx.clear_sessions();
            let (attest, signature) =
                quoted.with_context(|| format!("TPM2_Quote on {}", ak.tpm.tcti))?;
            let AttestInfo::Quote { info } = attest.attested() else {
                bail!("TPM2_Quote returned no quote")
            };
            let pcrs = read_pcrs(&mut ak.tpm.ctx, selection.clone())?;
            let composite: Vec<u8> = pcrs.iter().flatten().copied().collect();
            if info.pcr_digest().value() != digest(&SHA256, &composite).as_ref() {
                log::warn!("a PCR changed while quoting (attempt {attempt}); quoting again");
                continue;
            }
            let raw_signature = match &signature {
                Signature::RsaSsa(s) => s.signature().value().to_vec(),
                _ => bail!("the AK signed with another scheme than RSASSA: Trustee verifies RSASSA-SHA256 only"),
            };
            return Ok(Quote {
                message: attest.marshall().context("marshal TPMS_ATTEST")?,
                signature: signature.marshall().context("marshal TPMT_SIGNATURE")?,
                raw_signature,
                pcrs,
                ak_modulus,
                ak_exponent,
            });
        }
        bail!("the PCRs kept changing during {QUOTE_TRIES} quotes")
    }

    /// Whether `index` is a defined NV index (TPM2_GetCapability, no
    /// authorization).
    pub fn nv_defined(&mut self, index: u32) -> Result<bool> {
        let handle =
            NvIndexTpmHandle::new(index).map_err(|_| anyhow!("{index:#x} is not an NV index"))?;
        self.ctx.clear_sessions();
        let defined = nv::list(&mut self.ctx)
            .with_context(|| format!("list the NV indices on {}", self.tcti))?
            .iter()
            .any(|(public, _)| public.nv_index() == handle);
        Ok(defined)
    }

    /// Reads a whole NV index with owner authorization (chunked by the TPM's buffer size).
    pub fn nv_read(&mut self, index: u32) -> Result<Vec<u8>> {
        let handle =
            NvIndexTpmHandle::new(index).map_err(|_| anyhow!("{index:#x} is not an NV index"))?;
        self.ctx
            .set_sessions((Some(AuthSession::Password), None, None));
        let result = nv::read_full(&mut self.ctx, NvAuth::Owner, handle);
        self.ctx.clear_sessions();
        result.with_context(|| format!("read NV index {index:#010x} on {}", self.tcti))
    }

    /// Writes `data` to an owner NV index, (re)defining it with that size.
    pub fn nv_write(&mut self, index: u32, data: &[u8]) -> Result<()> {
        let tpm_handle =
            NvIndexTpmHandle::new(index).map_err(|_| anyhow!("{index:#x} is not an NV index"))?;
        self.define_and_write(tpm_handle, data).with_context(|| {
            format!(
                "write {} bytes to NV index {index:#010x} on {}",
                data.len(),
                self.tcti
            )
        })
    }

    // Sessions only around the commands that take authorization: tpm2-tss
    // 3.2 crashes in Esys_TR_FromTPMPublic when handed a password session.
    fn define_and_write(&mut self, tpm_handle: NvIndexTpmHandle, data: &[u8]) -> Result<()> {
        self.ctx.clear_sessions();
        let existing = nv::list(&mut self.ctx)?
            .into_iter()
            .find(|(p, _)| p.nv_index() == tpm_handle);
        let owner = Some(AuthSession::Password);
        let handle = match existing {
            Some((public, _)) if public.data_size() == data.len() => {
                self.ctx.tr_from_tpm_public(tpm_handle.into())?.into()
            }
            other => {
                if other.is_some() {
                    let old = self.ctx.tr_from_tpm_public(tpm_handle.into())?;
                    self.ctx.execute_with_session(owner, |ctx| {
                        ctx.nv_undefine_space(Provision::Owner, old.into())
                    })?;
                }
                let attributes = NvIndexAttributesBuilder::new()
                    .with_owner_write(true)
                    .with_owner_read(true)
                    .build()?;
                let public = NvPublicBuilder::new()
                    .with_nv_index(tpm_handle)
                    .with_index_name_algorithm(HashingAlgorithm::Sha256)
                    .with_index_attributes(attributes)
                    .with_data_area_size(data.len())
                    .build()?;
                self.ctx.execute_with_session(owner, |ctx| {
                    ctx.nv_define_space(Provision::Owner, None, public)
                })?
            }
        };
        let buffer = MaxNvBuffer::try_from(data.to_vec())?;
        self.ctx
            .execute_with_session(owner, |ctx| ctx.nv_write(NvAuth::Owner, handle, buffer, 0))?;
        Ok(())
    }
}

fn read_pcrs(
    ctx: &mut Context,
    selection: tss_esapi::structures::PcrSelectionList,
) -> Result<Vec<[u8; 32]>> {
    let data = pcr::read_all(ctx, selection).context("read the SHA-256 PCRs")?;
    let bank = data
        .pcr_bank(HashingAlgorithm::Sha256)
        .context("the TPM has no SHA-256 PCR bank")?;
    SLOTS
        .iter()
        .map(|slot| {
            let d = bank
                .get_digest(*slot)
                .with_context(|| format!("PCR {slot:?} missing from the SHA-256 bank"))?;
            <[u8; 32]>::try_from(d.value()).map_err(|_| anyhow!("PCR {slot:?} is not 32 bytes"))
        })
        .collect()
}

fn rsa_parts(public: &Public) -> Result<(Vec<u8>, u32)> {
    match public {
        Public::Rsa {
            unique, parameters, ..
        } => {
            let exponent = match parameters.exponent().value() {
                0 => 65537,
                e => e,
            };
            Ok((unique.value().to_vec(), exponent))
        }
        _ => bail!("the attestation key is not an RSA key: Trustee verifies RSA AKs only"),
    }
}
