//! `spin`: never returns from `on-request` or `on-produce` (an infinite loop that does not
//! allocate or call the host). The gateway must interrupt it at its CPU deadline.
//!
//! Subscribes to the request and produce hooks, for every API key. Configuration: ignored.

use sluice_sdk::{Body, Capabilities, Context, Hooks, KafkaError, Plugin, Records, RequestAction};

/// The plugin.
pub struct Spin;

fn spin_forever() -> ! {
    let mut n: u64 = 0;
    loop {
        // black_box: the loop has an observable effect, so it cannot be optimised away.
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

impl Plugin for Spin {
    fn describe() -> Capabilities {
        Capabilities::new(Hooks::REQUEST | Hooks::PRODUCE)
    }

    fn configure(_config: &str) -> Result<Self, String> {
        Ok(Spin)
    }

    fn on_request(&mut self, _ctx: &Context, _body: &dyn Body) -> RequestAction {
        spin_forever()
    }

    fn on_produce(&mut self, _ctx: &Context, _records: &mut dyn Records) -> Result<(), KafkaError> {
        spin_forever()
    }
}

sluice_sdk::export_plugin!(Spin);
