//! The per-sandbox init. Started by the sqrx runtime; not meant to be run by hand. It also
//! plays sqrx's other roles: `sqrx-init js-worker` is a confined JavaScript worker, and the
//! environment can name the network daemon or the session info service (see
//! `sqrx_core::roles`).

fn main() {
    let role =
        sqrx_core::roles::Role::of_sqrx_init(std::env::args_os().nth(1).as_deref(), |name| {
            std::env::var_os(name).is_some()
        });
    std::process::exit(role.run());
}
