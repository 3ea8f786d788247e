//! `noop`: subscribes to every request and response (all API keys) and forwards them
//! unchanged without reading them. The baseline for measuring the cost of a plugin call.
//!
//! Configuration: none (any configuration is accepted and ignored).

use sluice_sdk::{Capabilities, Hooks, Plugin};

/// The plugin: no state.
pub struct Noop;

impl Plugin for Noop {
    fn describe() -> Capabilities {
        Capabilities::new(Hooks::REQUEST | Hooks::RESPONSE)
    }

    fn configure(_config: &str) -> Result<Self, String> {
        Ok(Noop)
    }

    // on_request / on_response: the SDK's defaults forward unchanged.
}

sluice_sdk::export_plugin!(Noop);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::testing::Harness;
    use sluice_sdk::{api_key, RequestAction, ResponseAction};

    #[test]
    fn forwards_everything_for_every_api() {
        let mut h = Harness::<Noop>::new("").unwrap();
        assert!(h.capabilities().api_keys.is_empty(), "every API key");
        for key in [api_key::PRODUCE, api_key::FETCH, api_key::METADATA, 999] {
            assert_eq!(h.request(key, 0, b"body"), RequestAction::Forward);
            assert_eq!(h.response(key, 0, b"body"), ResponseAction::Forward);
        }
        assert!(h.logs().is_empty());
    }
}
