//! The per-sandbox init. Started by the sqrx runtime; not meant to be run by hand.

fn main() {
    sqrx_core::session::run_if_info_service();
    std::process::exit(sqrx_core::init::main());
}
