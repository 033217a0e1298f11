//! Handing freed heap memory back to the operating system.

/// Return free memory at the top of, and inside, every malloc arena to the kernel.
///
/// QuickJS allocates with the C allocator. After a script ran a runtime out of memory and the
/// runtime was freed, glibc keeps the freed pages mapped (in the arena of the worker thread
/// that used them) unless asked; this is how the host's RSS gets back to its baseline.
pub fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim takes no pointers and only reorganises the allocator's own free
    // lists under its arena locks; it is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}
