//! `hog`: allocates without bound in `on-request` and `on-produce`, 1 MiB at a time, touching
//! every page, until the allocation fails (the gateway's memory limit refuses `memory.grow`;
//! Rust then aborts, which traps). The gateway must survive and recycle the instance.
//!
//! Subscribes to the request and produce hooks, for every API key. Configuration: ignored.

use sluice_sdk::{Body, Capabilities, Context, Hooks, KafkaError, Plugin, Records, RequestAction};

/// The plugin.
pub struct Hog;

fn allocate_forever() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        // Non-zero fill: the pages are written, not just reserved.
        hoard.push(std::hint::black_box(vec![0xAB; 1 << 20]));
    }
}

impl Plugin for Hog {
    fn describe() -> Capabilities {
        Capabilities::new(Hooks::REQUEST | Hooks::PRODUCE)
    }

    fn configure(_config: &str) -> Result<Self, String> {
        Ok(Hog)
    }

    fn on_request(&mut self, _ctx: &Context, _body: &dyn Body) -> RequestAction {
        allocate_forever()
    }

    fn on_produce(&mut self, _ctx: &Context, _records: &mut dyn Records) -> Result<(), KafkaError> {
        allocate_forever()
    }
}

sluice_sdk::export_plugin!(Hog);
