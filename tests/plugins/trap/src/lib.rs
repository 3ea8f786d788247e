//! `trap`: panics in `on-request` and `on-produce`. Plugins build with `panic = "abort"`, so
//! the panic is a WebAssembly trap (`unreachable`); the gateway must apply the interceptor's
//! failure policy and use a fresh instance afterwards.
//!
//! Subscribes to the request and produce hooks, for every API key. Configuration: ignored.

use sluice_sdk::{Body, Capabilities, Context, Hooks, KafkaError, Plugin, Records, RequestAction};

/// The plugin.
pub struct Trap;

impl Plugin for Trap {
    fn describe() -> Capabilities {
        Capabilities::new(Hooks::REQUEST | Hooks::PRODUCE)
    }

    fn configure(_config: &str) -> Result<Self, String> {
        Ok(Trap)
    }

    fn on_request(&mut self, ctx: &Context, _body: &dyn Body) -> RequestAction {
        panic!(
            "trap plugin: deliberate panic in on-request (api key {})",
            ctx.api_key
        )
    }

    fn on_produce(&mut self, _ctx: &Context, _records: &mut dyn Records) -> Result<(), KafkaError> {
        panic!("trap plugin: deliberate panic in on-produce")
    }
}

sluice_sdk::export_plugin!(Trap);
