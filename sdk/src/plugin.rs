//! The [`Plugin`] trait and the per-instance state behind [`crate::export_plugin!`].

use std::any::Any;
use std::cell::RefCell;

use crate::bindings::sluice::interceptor::types as wit;
use crate::body::HostBody;
use crate::records::HostRecords;
use crate::{Body, Capabilities, Context, KafkaError, Records, RequestAction, ResponseAction};

/// An interceptor plugin.
///
/// Only [`describe`](Plugin::describe) and [`configure`](Plugin::configure) are required;
/// every hook defaults to a no-op (forward unchanged, or `Ok(())`). The gateway calls only the
/// hooks that `describe` lists, so list exactly the hooks you implement: an unlisted hook is
/// never called, and a listed `produce` or `fetch` hook makes the gateway decode records for
/// you.
///
/// The value built by `configure` lives as long as the WebAssembly instance; hooks get it as
/// `&mut self`, so it can keep caches or counters (but the gateway may run several instances
/// of one interceptor and may recycle them: use [`crate::kv`] for state that must be shared
/// or kept).
pub trait Plugin: Sized + 'static {
    /// The hooks this plugin implements and, for `on_request` / `on_response`, the API keys
    /// it wants (empty: every API). Called before `configure`, so it cannot depend on the
    /// configuration.
    fn describe() -> Capabilities;

    /// Builds the plugin from the interceptor's JSON configuration (the text of its
    /// `config` object). An `Err` refuses the installation; its message is shown to the
    /// operator, so make it say what is wrong and what is expected.
    fn configure(config: &str) -> Result<Self, String>;

    /// A request of a subscribed API key, as a raw body ([`crate::kafka`] decodes it).
    /// Default: [`RequestAction::Forward`].
    fn on_request(&mut self, ctx: &Context, body: &dyn Body) -> RequestAction {
        let _ = (ctx, body);
        RequestAction::Forward
    }

    /// A response of a subscribed API key, as a raw body. Default: [`ResponseAction::Forward`].
    fn on_response(&mut self, ctx: &Context, body: &dyn Body) -> ResponseAction {
        let _ = (ctx, body);
        ResponseAction::Forward
    }

    /// The records of a Produce request. Change them through `records`; reject one partition
    /// with [`Records::reject`]; return `Err` to reject the whole request. Default: `Ok(())`.
    fn on_produce(&mut self, ctx: &Context, records: &mut dyn Records) -> Result<(), KafkaError> {
        let _ = (ctx, records);
        Ok(())
    }

    /// The records of a Fetch response. Same contract as [`on_produce`](Plugin::on_produce);
    /// `Err` fails every partition of the response. Default: `Ok(())`.
    fn on_fetch(&mut self, ctx: &Context, records: &mut dyn Records) -> Result<(), KafkaError> {
        let _ = (ctx, records);
        Ok(())
    }
}

thread_local! {
    /// The configured plugin of this instance (wasm is single-threaded; natively, each thread
    /// has its own, which only matters to code that calls the exports directly).
    static PLUGIN: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

/// On wasm, routes panic messages to the gateway's log (at error level) before the panic aborts
/// (traps): without it the message would go to a WASI stderr the gateway discards.
fn install_panic_hook() {
    #[cfg(target_arch = "wasm32")]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            std::panic::set_hook(Box::new(|info| {
                let payload = info.payload();
                let message = payload
                    .downcast_ref::<&str>()
                    .copied()
                    .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                    .unwrap_or("(no message)");
                let at = info
                    .location()
                    .map(|l| format!(" at {}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                crate::host::log(
                    crate::Level::Error,
                    &format!("plugin panicked{at}: {message}"),
                );
            }))
        });
    }
}

fn with_plugin<P: Plugin, R>(f: impl FnOnce(&mut P) -> R) -> R {
    install_panic_hook();
    PLUGIN.with(|slot| {
        let mut slot = slot.borrow_mut();
        let plugin = slot
            .as_mut()
            .and_then(|p| p.downcast_mut::<P>())
            .expect("sluice-sdk: a hook was called before `configure` succeeded on this instance");
        f(plugin)
    })
}

/// `describe` export.
pub fn describe<P: Plugin>() -> Capabilities {
    install_panic_hook();
    P::describe()
}

/// `configure` export: on success the new plugin value replaces the previous one; on error the
/// previous one (if any) is kept.
pub fn configure<P: Plugin>(config: String) -> Result<(), String> {
    install_panic_hook();
    let plugin = P::configure(&config)?;
    PLUGIN.with(|slot| *slot.borrow_mut() = Some(Box::new(plugin)));
    Ok(())
}

/// `on-request` export.
pub fn on_request<P: Plugin>(ctx: Context, body: &wit::Message) -> RequestAction {
    with_plugin::<P, _>(|p| p.on_request(&ctx, &HostBody(body)))
}

/// `on-response` export.
pub fn on_response<P: Plugin>(ctx: Context, body: &wit::Message) -> ResponseAction {
    with_plugin::<P, _>(|p| p.on_response(&ctx, &HostBody(body)))
}

/// `on-produce` export.
pub fn on_produce<P: Plugin>(ctx: Context, records: &wit::Records) -> Result<(), KafkaError> {
    with_plugin::<P, _>(|p| p.on_produce(&ctx, &mut HostRecords(records)))
}

/// `on-fetch` export.
pub fn on_fetch<P: Plugin>(ctx: Context, records: &wit::Records) -> Result<(), KafkaError> {
    with_plugin::<P, _>(|p| p.on_fetch(&ctx, &mut HostRecords(records)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Hooks;

    struct Counter {
        calls: u32,
        prefix: String,
    }

    impl Plugin for Counter {
        fn describe() -> Capabilities {
            Capabilities::new(Hooks::REQUEST)
        }
        fn configure(config: &str) -> Result<Self, String> {
            if config == "bad" {
                return Err("bad config".into());
            }
            Ok(Counter {
                calls: 0,
                prefix: config.to_string(),
            })
        }
    }

    #[test]
    fn configure_keeps_the_plugin_and_a_failed_configure_keeps_the_previous_one() {
        assert_eq!(describe::<Counter>().hooks, Hooks::REQUEST);
        configure::<Counter>("one".into()).unwrap();
        with_plugin::<Counter, _>(|p| p.calls += 1);
        assert_eq!(configure::<Counter>("bad".into()), Err("bad config".into()));
        with_plugin::<Counter, _>(|p| {
            assert_eq!(p.prefix, "one");
            assert_eq!(p.calls, 1);
        });
        configure::<Counter>("two".into()).unwrap();
        with_plugin::<Counter, _>(|p| assert_eq!((p.prefix.as_str(), p.calls), ("two", 0)));
    }

    #[test]
    #[should_panic(expected = "before `configure`")]
    fn a_hook_before_configure_panics() {
        with_plugin::<Counter, _>(|_| ());
    }

    #[test]
    fn default_hooks_are_no_ops() {
        let mut p = Counter::configure("x").unwrap();
        let ctx = Context::new(0, 9);
        let body: &[u8] = b"abc";
        assert_eq!(p.on_request(&ctx, &body), RequestAction::Forward);
        assert_eq!(p.on_response(&ctx, &body), ResponseAction::Forward);
        let mut recs = crate::testing::MemRecords::new().with_partition("t", 0, []);
        assert_eq!(p.on_produce(&ctx, &mut recs), Ok(()));
        assert_eq!(p.on_fetch(&ctx, &mut recs), Ok(()));
        assert!(!recs.is_modified(0));
    }
}
