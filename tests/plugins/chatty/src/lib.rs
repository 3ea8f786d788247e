//! `chatty`: writes to stdout and stderr on every produce, the way plugins from any toolchain
//! do (`println!`, `eprintln!`, and a panic message on stderr). The gateway must log the lines
//! as the interceptor's own, and never let them disturb a worker.
//!
//! Subscribes to the produce hook. Configuration: `{"panic": true}` panics in `on-produce`
//! after printing; anything else just prints.

use sluice_sdk::{Capabilities, Context, Hooks, KafkaError, Plugin, Records};

/// The plugin: whether to panic.
pub struct Chatty {
    panic: bool,
}

impl Plugin for Chatty {
    fn describe() -> Capabilities {
        Capabilities::new(Hooks::PRODUCE)
    }

    fn configure(config: &str) -> Result<Self, String> {
        println!("chatty configured with {config}");
        Ok(Chatty {
            panic: config.replace(' ', "").contains("\"panic\":true"),
        })
    }

    fn on_produce(&mut self, ctx: &Context, records: &mut dyn Records) -> Result<(), KafkaError> {
        let n: u32 = (0..records.partition_count())
            .map(|p| records.record_count(p))
            .sum();
        println!("chatty stdout: {} saw {n} records", ctx.interceptor);
        eprintln!("chatty stderr: a line for stderr");
        // A partial line, completed by the next call (or flushed when the instance goes).
        print!("chatty partial ");
        if self.panic {
            panic!("chatty panicked on purpose");
        }
        Ok(())
    }
}

sluice_sdk::export_plugin!(Chatty);
