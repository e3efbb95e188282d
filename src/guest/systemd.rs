//! What systemd says about a unit, typed: the one parser of its `ActiveState` values.

use serde::Serialize;

/// A unit's `ActiveState`, as systemd.unit(5) lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ActiveState {
    Active,
    Reloading,
    Inactive,
    Failed,
    Activating,
    Deactivating,
    Maintenance,
    Refreshing,
}

impl ActiveState {
    pub const ALL: [ActiveState; 8] = [
        ActiveState::Active,
        ActiveState::Reloading,
        ActiveState::Inactive,
        ActiveState::Failed,
        ActiveState::Activating,
        ActiveState::Deactivating,
        ActiveState::Maintenance,
        ActiveState::Refreshing,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ActiveState::Active => "active",
            ActiveState::Reloading => "reloading",
            ActiveState::Inactive => "inactive",
            ActiveState::Failed => "failed",
            ActiveState::Activating => "activating",
            ActiveState::Deactivating => "deactivating",
            ActiveState::Maintenance => "maintenance",
            ActiveState::Refreshing => "refreshing",
        }
    }

    /// The value of `systemctl show -p ActiveState` (guest text); None for anything else.
    pub fn parse(s: &str) -> Option<ActiveState> {
        ActiveState::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

impl std::fmt::Display for ActiveState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::ActiveState;

    #[test]
    fn every_state_round_trips_and_serialises_as_systemd_spells_it() {
        for a in ActiveState::ALL {
            assert_eq!(ActiveState::parse(a.as_str()), Some(a));
            assert_eq!(serde_json::to_value(a).unwrap(), a.as_str());
        }
        assert_eq!(ActiveState::parse("Active"), None);
        assert_eq!(ActiveState::parse("active\u{1b}[2J"), None);
    }
}
