// SPDX-License-Identifier: Apache-2.0
//! `cvm-attest run`, what the boot units start: configuration → key files
//! of open volumes wiped, their sinks dropped → platform →
//! one attested session (KBS URLs tried in order) → every secret fetched
//! concurrently → delivered all-or-nothing → consumer units reloaded →
//! systemd told. Progress goes to systemd as `STATUS=`, and every wait for a
//! retry extends the unit's start timeout within the run's own deadline.

use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::cli::{ConfigArgs, RunArgs};
use crate::config::{self, Config, ConfigError, Overrides, Sources};
use crate::evidence::{Platform, TeeOptions};
use crate::exit::Usage;
use crate::http::{Transport, TransportConfig, TransportError};
use crate::kbs::{Client, Fetched};
use crate::resource::ResourcePath;
use crate::root;
use crate::sink::{self, Layout, UnitAction};
use crate::systemd::{self, Notifier};

/// Where the configuration lives.
const CONFIG: &str = "/etc/cvm-attest/config.toml";
const DROPINS: &str = "/etc/cvm-attest/config.d";

pub async fn run(args: RunArgs) -> Result<()> {
    let started = Instant::now();
    let notify = Rc::new(Notifier::from_env());
    let initrd = in_initrd(&args.source);
    let overrides = Overrides {
        kbs: args.kbs.clone(),
        kbs_ca: args.kbs_ca.clone(),
        insecure_http: args.insecure_http,
        tee: args.tee,
        timeout: args.timeout,
    };
    let mut config = load(&args.source, &overrides, initrd, false)?;
    if !config.enabled {
        let why = config.disabled_by.as_deref().unwrap_or("the configuration");
        log::info!("disabled by {why}: nothing to do");
        notify.status(&format!("disabled by {why}"));
        notify.ready();
        return Ok(());
    }
    // Every KBS URL, the backups too: a typo found only at failover would
    // hide until the day the first KBS is down.
    for url in &config.kbs {
        crate::kbs_url::parse(url, config.insecure_http).map_err(Usage)?;
    }
    let layout = Layout::standard(&config.secrets_dir);
    // A volume opened already (by the initramfs, or earlier in this boot)
    // needs no key file, and one left for it goes.
    let (open, _) = sink::volumes::forget_open(&layout, &config.secrets);
    let configured = config.secrets.len();
    config.secrets = sink::volumes::skip_open(std::mem::take(&mut config.secrets), &open);
    if configured > 0 && config.secrets.is_empty() {
        log::info!("every secret is the key of a volume that is open: nothing to fetch");
        notify.status("nothing to fetch: the volumes are open");
        notify.ready();
        return Ok(());
    }
    let deadline = started + config.timeout;
    notify.status("detecting the TEE");
    let options = TeeOptions {
        tcti: config.tcti.clone().unwrap_or_else(crate::tpm::default_tcti),
        ak_handle: config.ak_handle,
        imds: config
            .imds_url
            .clone()
            .unwrap_or_else(|| crate::imds::DEFAULT_URL.to_owned()),
        imds_deadline: config.timeout,
        hcl_timeout: config.hcl_timeout.unwrap_or(Duration::from_secs(10)),
    };
    let platform = Platform::select(config.tee, &options)?;

    let resources = unique_resources(&config);
    let required: Vec<bool> = resources
        .iter()
        .map(|r| {
            config
                .secrets
                .iter()
                .any(|s| s.required && &s.resource == r)
        })
        .collect();
    let fetched = fetch(
        &config, &notify, platform, &options, &resources, &required, deadline,
    )
    .await?;

    let mut items: Vec<(&sink::Secret, &[u8])> = Vec::new();
    for secret in &config.secrets {
        let slot = resources
            .iter()
            .position(|r| r == &secret.resource)
            .context("resource list out of step")?;
        match &fetched[slot] {
            Ok(f) => items.push((secret, &f.data)),
            Err(e) => log::warn!(
                "optional secret '{}' ({}) is not delivered: {e:#}",
                secret.name,
                secret.resource
            ),
        }
    }
    notify.status(&format!("delivering {} secret(s)", items.len()));
    // The required secrets together, all or nothing; then each optional one
    // on its own, skipped with a warning when it cannot be delivered.
    let (required_items, optional): (Vec<_>, Vec<_>) =
        items.into_iter().partition(|(s, _)| s.required);
    let mut delivered = sink::deliver(&layout, &required_items)?;
    let mut items = required_items;
    for item in optional {
        match sink::deliver(&layout, &[item]) {
            Ok(d) => {
                delivered.changed += d.changed;
                delivered.unchanged += d.unchanged;
                delivered.changed_items.extend(d.changed_items);
                items.push(item);
            }
            Err(e) => log::warn!(
                "optional secret '{}' ({}) is not delivered: {e:#}",
                item.0.name,
                item.0.resource
            ),
        }
    }
    // Only the units of secrets that changed: a re-run that changes nothing
    // restarts nothing.
    let changed = items
        .iter()
        .zip(&delivered.changed_items)
        .filter(|(_, &changed)| changed);
    let actions = unit_actions(changed.map(|((s, _), _)| *s));
    if !actions.is_empty() {
        if initrd {
            // The units named are the real root's: none runs yet, and each
            // reads what was delivered when it starts (/run survives).
            log::info!(
                "in the initramfs: {} unit action(s) left to the real root, whose units start after switch-root",
                actions.len()
            );
        } else {
            notify.status(&format!("reloading {} unit(s)", actions.len()));
            let left = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_secs(1));
            systemd::act_on_units(&actions, left).await?;
        }
    }
    let summary = format!(
        "delivered {} secret(s): {} destination(s) written, {} unchanged, in {:.1} s",
        items.len(),
        delivered.changed,
        delivered.unchanged,
        started.elapsed().as_secs_f64()
    );
    log::info!("{summary}");
    notify.status(&summary);
    notify.ready();
    Ok(())
}

/// `cleanup`: wipe the key files of the configured volumes that are open.
pub fn cleanup(args: &ConfigArgs) -> Result<()> {
    let config = load(args, &Overrides::default(), in_initrd(args), true)?;
    let layout = Layout::standard(&config.secrets_dir);
    let (open, failed) = sink::volumes::forget_open(&layout, &config.secrets);
    if failed > 0 {
        bail!("{failed} key file(s) of open volumes could not be removed; see the warnings above");
    }
    if open.is_empty() {
        log::debug!("no configured volume is open: no key file to wipe");
    } else {
        log::debug!("open dm-crypt volumes: {open:?}");
    }
    Ok(())
}

fn in_initrd(args: &ConfigArgs) -> bool {
    args.initrd || root::path("/etc/initrd-release").exists()
}

/// The configuration, every layer applied. A file that cannot be read is
/// local I/O (exit 1); the rest is usage (2).
fn load(
    args: &ConfigArgs,
    overrides: &Overrides,
    initrd: bool,
    secrets_only: bool,
) -> Result<Config> {
    load_layers(args, overrides, initrd, secrets_only).map_err(|e| {
        match e.downcast_ref::<ConfigError>() {
            Some(ConfigError::Read { .. }) | None => e,
            Some(_) => Usage(e).into(),
        }
    })
}

fn load_layers(
    args: &ConfigArgs,
    overrides: &Overrides,
    initrd: bool,
    secrets_only: bool,
) -> Result<Config> {
    let file = args.config.clone().unwrap_or_else(|| root::path(CONFIG));
    let dropins = match &args.config {
        Some(f) => f.with_file_name("config.d"),
        None => root::path(DROPINS),
    };
    let cmdline = crate::cmdline::read(initrd)?;
    let sources = Sources {
        file: &file,
        file_given: args.config.is_some(),
        dropins: &dropins,
        cmdline: &cmdline,
        initrd,
        secrets_only,
    };
    Ok(config::load(&sources, overrides)?)
}

/// Each resource once, in configuration order.
fn unique_resources(config: &Config) -> Vec<ResourcePath> {
    let mut out: Vec<ResourcePath> = Vec::new();
    for s in &config.secrets {
        if !out.contains(&s.resource) {
            out.push(s.resource.clone());
        }
    }
    out
}

fn unit_actions<'a>(secrets: impl Iterator<Item = &'a sink::Secret>) -> Vec<UnitAction> {
    let mut out: Vec<UnitAction> = Vec::new();
    for action in secrets.flat_map(|s| s.units.iter()) {
        if !out.contains(action) {
            out.push(action.clone());
        }
    }
    out
}

/// Longest a single KBS is tried before the next one gets its turn.
const PER_KBS: Duration = Duration::from_secs(30);

/// The KBS URLs in order, round after round until the deadline: an
/// unreachable one gives way to the next; a KBS that answers is final,
/// whatever it says. Between rounds in which no KBS answered, the run waits
/// (backoff, or longer when a KBS asked for it with `Retry-After`). A KBS
/// whose certificate does not verify or whose answer is over the size cap is
/// not asked again.
async fn fetch(
    config: &Config,
    notify: &Rc<Notifier>,
    platform: Platform,
    options: &TeeOptions,
    resources: &[ResourcePath],
    required: &[bool],
    deadline: Instant,
) -> Result<Vec<Result<Fetched>>> {
    let mut last: Option<anyhow::Error> = None;
    let mut retired = vec![false; config.kbs.len()];
    let backoff = crate::http::backoff();
    'rounds: for round in 0u32.. {
        let mut asked_wait = Duration::ZERO;
        for (i, url) in config.kbs.iter().enumerate() {
            if retired[i] {
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left < Duration::from_millis(100) {
                break 'rounds;
            }
            let cfg = TransportConfig {
                url: url.clone(),
                ca: config.kbs_ca.clone(),
                insecure_http: config.insecure_http,
                deadline: left.min(PER_KBS),
                connect_timeout: config.connect_timeout,
                request_timeout: config.request_timeout,
            };
            // First: it refuses a URL that must not be shown (credentials).
            let mut transport = Transport::new(&cfg).map_err(Usage)?;
            notify.status(&format!("attesting to {url} as {}", platform.name()));
            let observer = Rc::clone(notify);
            transport.observe(move |message, wait| {
                observer.status(message);
                observer.extend_timeout(wait + Duration::from_secs(30));
            });
            // IMDS, when the evidence needs it, shares the run's deadline.
            let options = TeeOptions {
                imds_deadline: left,
                ..options.clone()
            };
            let client = Client::new(&transport, platform, &options)?;
            let result = client.fetch_each(resources, required).await;
            let Err(e) = &result else { return result };
            let Some(failure) = e.chain().find_map(|c| c.downcast_ref::<TransportError>()) else {
                return result;
            };
            if failure.is_final() {
                retired[i] = true;
                // With one KBS the error ends the run and is shown then.
                if config.kbs.len() > 1 {
                    log::warn!("{e:#}; not asking {url} again");
                }
            } else {
                asked_wait = asked_wait.max(failure.retry_after().unwrap_or_default());
                if config.kbs.len() > 1 {
                    log::warn!("{e:#}; trying the next KBS");
                } else {
                    log::warn!("{e:#}");
                }
            }
            last = result.err();
        }
        if retired.iter().all(|&r| r) {
            // Each KBS gave an answer no retry can change: that is the error.
            if let Some(e) = last {
                return Err(e);
            }
            break;
        }
        let pause = backoff.delay(round).max(asked_wait);
        let left = deadline.saturating_duration_since(Instant::now());
        if pause + Duration::from_millis(100) >= left {
            break;
        }
        let message = format!(
            "no KBS answered; trying again in {}",
            crate::http::seconds(pause)
        );
        log::warn!("{message}");
        notify.status(&message);
        notify.extend_timeout(pause + Duration::from_secs(30));
        tokio::time::sleep(pause).await;
    }
    let tried = config.kbs.join(", ");
    match last {
        Some(e) => Err(e.context(format!(
            "no KBS answered within the {} deadline (tried {tried})",
            crate::http::seconds(config.timeout)
        ))),
        None => bail!(
            "the {} deadline passed before any KBS was tried",
            crate::http::seconds(config.timeout)
        ),
    }
}
