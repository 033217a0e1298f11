//! The per-sandbox init. Started by the sqrx runtime; not meant to be run by hand.
//! `sqrx-init js-worker` is a confined JavaScript worker (see `sqrx_core::js::confined`);
//! with `SQRX_RESOLVER` set it is a runtime's DNS resolver (see `sqrx_core::network`).

fn main() {
    #[cfg(feature = "js")]
    if std::env::args_os().nth(1).as_deref()
        == Some(std::ffi::OsStr::new(sqrx_core::js::confined::WORKER_ARG))
    {
        std::process::exit(sqrx_core::js::confined::worker_main());
    }
    sqrx_core::session::run_if_info_service();
    sqrx_core::network::run_if_resolver();
    std::process::exit(sqrx_core::init::main());
}
