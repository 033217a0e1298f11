//! The per-sandbox init. Started by the sqrx runtime; not meant to be run by hand.

fn main() {
    std::process::exit(sqrx_core::init::main());
}
