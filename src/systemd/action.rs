// SPDX-License-Identifier: Apache-2.0
//! What to do to a unit that consumes a delivered secret, and how the agent
//! hands it to its units helper: one `ACTION:UNIT` argument each (the action
//! has no colon; a unit name may).

use anyhow::{bail, Result};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitAction {
    pub unit: String,
    pub action: Action,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Reload,
    Restart,
    ReloadOrRestart,
}

impl Action {
    /// As in the configuration, `systemctl` and the helper's arguments.
    pub fn name(self) -> &'static str {
        match self {
            Action::Reload => "reload",
            Action::Restart => "restart",
            Action::ReloadOrRestart => "reload-or-restart",
        }
    }
}

// The agent encodes, its units helper decodes: each binary uses one half.
#[allow(dead_code)]
impl UnitAction {
    pub fn to_arg(&self) -> String {
        format!("{}:{}", self.action.name(), self.unit)
    }

    pub fn from_arg(arg: &str) -> Result<UnitAction> {
        let (name, unit) = arg.split_once(':').unwrap_or((arg, ""));
        let action = [Action::Reload, Action::Restart, Action::ReloadOrRestart]
            .into_iter()
            .find(|a| a.name() == name);
        let Some(action) = action else {
            bail!(
                "'{}' is not ACTION:UNIT with ACTION reload, restart or reload-or-restart",
                arg.escape_default()
            );
        };
        check_unit_name(unit)?;
        Ok(UnitAction {
            unit: unit.to_owned(),
            action,
        })
    }
}

/// The configuration validates names already; this refuses what could never
/// be a unit whatever the caller (a path, a control character).
pub fn check_unit_name(name: &str) -> Result<()> {
    if name.is_empty() || name.contains('/') || name.chars().any(char::is_control) {
        bail!(
            "refuse to act on unit '{}': a unit name is not empty and has no '/' or control characters",
            name.escape_default()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{Action, UnitAction};

    #[test]
    fn arguments_round_trip_and_bad_ones_are_named() {
        for action in [Action::Reload, Action::Restart, Action::ReloadOrRestart] {
            let unit = UnitAction {
                unit: "getty@tty1:x.service".to_owned(),
                action,
            };
            assert_eq!(UnitAction::from_arg(&unit.to_arg()).unwrap(), unit);
        }
        for (arg, error) in [
            ("stop:a.service", "'stop:a.service' is not ACTION:UNIT"),
            ("a.service", "'a.service' is not ACTION:UNIT"),
            ("reload:", "refuse to act on unit ''"),
            (
                "reload:../x.service",
                "refuse to act on unit '../x.service'",
            ),
            ("restart:a\nb", "refuse to act on unit 'a\\nb'"),
        ] {
            let e = UnitAction::from_arg(arg).unwrap_err().to_string();
            assert!(e.starts_with(error), "{arg}: {e}");
        }
    }
}
